import { BraidError, errorCode } from '../errors';

/**
 * The one table from a dial failure's code to what each protocol tells the client.
 * SOCKS5 reply codes are RFC 1928 section 6; HTTP statuses follow RFC 9110 (502 for an upstream
 * that cannot be reached, 504 for one that did not answer in time).
 */
export const SOCKS_REPLY = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

export interface DialFailureReply {
  socks: number;
  http: number;
  reason: string;  // short text for HTTP bodies and logs
}

const TABLE: Record<string, DialFailureReply> = {
  ECONNREFUSED: { socks: SOCKS_REPLY.CONNECTION_REFUSED, http: 502, reason: 'connection refused by destination' },
  ECONNRESET: { socks: SOCKS_REPLY.CONNECTION_REFUSED, http: 502, reason: 'connection reset by destination' },
  ENETUNREACH: { socks: SOCKS_REPLY.NETWORK_UNREACHABLE, http: 502, reason: 'network unreachable' },
  ENETDOWN: { socks: SOCKS_REPLY.NETWORK_UNREACHABLE, http: 502, reason: 'network down' },
  EHOSTUNREACH: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'host unreachable' },
  EHOSTDOWN: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'host down' },
  EADDRNOTAVAIL: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'address not available' },
  EAFNOSUPPORT: { socks: SOCKS_REPLY.ADDRESS_TYPE_NOT_SUPPORTED, http: 502, reason: 'address family not supported' },
  ENOTFOUND: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'host name not found' },
  EAI_NONAME: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'host name not found' },
  EAI_NODATA: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'host name has no address' },
  ENODATA: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'host name has no address' },
  EAI_AGAIN: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'name resolution failed temporarily' },
  EAI_FAIL: { socks: SOCKS_REPLY.HOST_UNREACHABLE, http: 502, reason: 'name resolution failed' },
  ETIMEDOUT: { socks: SOCKS_REPLY.TTL_EXPIRED, http: 504, reason: 'connection to destination timed out' },
  EACCES: { socks: SOCKS_REPLY.NOT_ALLOWED, http: 502, reason: 'connection not permitted' },
  EPERM: { socks: SOCKS_REPLY.NOT_ALLOWED, http: 502, reason: 'connection not permitted' },
  EPROXYLOOP: { socks: SOCKS_REPLY.NOT_ALLOWED, http: 403, reason: 'destination is this proxy' },
  EPOLICY: { socks: SOCKS_REPLY.NOT_ALLOWED, http: 403, reason: "refused by the relay's policy" },
  ENOPATH: { socks: SOCKS_REPLY.NOT_ALLOWED, http: 502, reason: 'no path the policy allows reaches the destination' },
  EBADPORT: { socks: SOCKS_REPLY.NOT_ALLOWED, http: 400, reason: 'destination port 0 is not allowed' },
  ELIMIT: { socks: SOCKS_REPLY.GENERAL_FAILURE, http: 503, reason: 'too many connections' },
  ESHUTDOWN: { socks: SOCKS_REPLY.GENERAL_FAILURE, http: 503, reason: 'proxy is shutting down' },
  EMFILE: { socks: SOCKS_REPLY.GENERAL_FAILURE, http: 503, reason: 'proxy is out of file descriptors' },
  ENFILE: { socks: SOCKS_REPLY.GENERAL_FAILURE, http: 503, reason: 'system is out of file descriptors' },
};

const DEFAULT: DialFailureReply = { socks: SOCKS_REPLY.GENERAL_FAILURE, http: 502, reason: 'cannot connect to destination' };

export function dialFailureReply(code: string): DialFailureReply {
  return TABLE[code] ?? DEFAULT;
}

/**
 * A dial failure that explains itself to the application's user, e.g. a relay's policy refusal
 * with its reason and what the relay's operator can do about it: its message is the reply's text.
 */
export class ExplainedDialError extends BraidError {}

/** The text an HTTP error reply carries for a failed dial (SOCKS5 can only carry the code). */
export function dialFailureText(err: unknown): string {
  return err instanceof ExplainedDialError ? err.message : dialFailureReply(errorCode(err)).reason;
}

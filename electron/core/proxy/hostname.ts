/**
 * Destination names are checked before they reach the resolver: a name with control characters or
 * spaces is never a real host, and getaddrinfo should not be asked about it.
 */
export function isValidHostname(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  // Underscores appear in real-world names (SRV-style labels), so they are allowed.
  return /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?$/.test(host) || isIpLiteral(host);
}

function isIpLiteral(host: string): boolean {
  return /^[0-9a-fA-F:.]+$/.test(host) && host.includes(':');
}

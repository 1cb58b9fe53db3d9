/**
 * Where clients should be sent for a proxy listening on `address`: a wildcard listener is reached
 * through loopback, since clients cannot connect to 0.0.0.0 or ::.
 */
export function clientHost(address: string): string {
  if (address === '0.0.0.0' || address === '') return '127.0.0.1';
  if (address === '::' || address === '[::]') return '::1';
  return address.replace(/^\[(.*)\]$/, '$1');
}

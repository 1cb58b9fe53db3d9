/** The kernel's MPTCP path manager (generic netlink) as the reconciler's EndpointApi. */
import * as netlink from '../native/netlink';
import type { EndpointApi } from './reconcile';

export const netlinkApi: EndpointApi = {
  listEndpoints: netlink.listEndpoints,
  addEndpoint: (o) => netlink.addEndpoint(o),
  removeEndpoint: (s) => netlink.removeEndpoint(s),
  setEndpointFlags: (s, f) => netlink.setEndpointFlags(s, f),
  getLimits: netlink.getLimits,
  setLimits: netlink.setLimits,
};

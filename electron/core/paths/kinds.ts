/**
 * What kind of link an interface is, from what the kernel tells in /sys/class/net and from the
 * names drivers and tethering give. The kind decides the default policy (a metered cellular link is
 * a backup), and the icon the user sees.
 */
import fs from 'node:fs';
import path from 'node:path';

export type InterfaceKind = 'wifi' | 'cellular' | 'ethernet' | 'other';

export interface SysfsFacts {
  devtype: string | null;      // DEVTYPE= from uevent: wlan, wwan, bridge, vlan, ...
  wireless: boolean;           // has wireless/ or phy80211/
  hasDevice: boolean;          // backed by hardware (device/ link), not purely virtual
  usbDriver: boolean;          // behind a USB device (tethered phones, USB modems)
}

export function readSysfs(ifname: string, root = '/sys/class/net'): SysfsFacts {
  const dir = path.join(root, ifname);
  let devtype: string | null = null;
  try {
    const m = /^DEVTYPE=(.*)$/m.exec(fs.readFileSync(path.join(dir, 'uevent'), 'utf8'));
    devtype = m ? m[1].trim() : null;
  } catch {
    /* interface gone or no uevent: decide by name */
  }
  const exists = (p: string) => fs.existsSync(path.join(dir, p));
  let usbDriver = false;
  try {
    usbDriver = /\/usb\d*\//.test(fs.realpathSync(path.join(dir, 'device')));
  } catch {
    /* virtual interface */
  }
  return { devtype, wireless: exists('wireless') || exists('phy80211'), hasDevice: exists('device'), usbDriver };
}

// Names that say what a link is when sysfs does not: modems (wwan, rmnet/ccmni on phones), PPP
// dial-up and USB tethering (usb0 from Android's RNDIS, enx<mac> from predictable naming of USB NICs).
const CELLULAR_NAME = /^(wwan|rmnet|ccmni|wwp|ppp|usb\d)/;
const WIFI_NAME = /^(wl|wlan|wifi|ath|ra\d)/;
const ETHERNET_NAME = /^(eth|en[ospx]|em\d)/;

export function classify(ifname: string, facts: SysfsFacts): InterfaceKind {
  if (facts.devtype === 'wlan' || facts.wireless) return 'wifi';
  if (facts.devtype === 'wwan') return 'cellular';
  if (CELLULAR_NAME.test(ifname)) return 'cellular';
  // A USB Ethernet adapter is usually a phone sharing its cellular link.
  if (/^enx/.test(ifname) && facts.usbDriver) return 'cellular';
  if (WIFI_NAME.test(ifname)) return 'wifi';
  if (ETHERNET_NAME.test(ifname) && (facts.hasDevice || facts.devtype === null)) return 'ethernet';
  return 'other';
}

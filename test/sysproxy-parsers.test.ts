/**
 * The KDE, macOS and Windows backends cannot run here (no Plasma, no Mac, no Windows), so their
 * command construction and output parsing are tested as pure functions. The sample outputs are
 * written out in the formats those tools print (networksetup(8), `reg query`, kreadconfig5); they
 * were not captured on this machine. GNOME is exercised for real in sysproxy.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hostPort, jsonEqual } from '../electron/core/sysproxy/backend';
import { clientHost } from '../electron/core/sysproxy/client-host';
import { backendCandidates, linuxDesktop } from '../electron/core/sysproxy/detect';
import { describeCommand } from '../electron/core/sysproxy/exec';
import { gnomeAppliedValues, gnomeSetCommands, gvariantString, gvariantStringArray } from '../electron/core/sysproxy/gnome';
import { KDE_UNSET, kdeAppliedValues, kdeProxyUrl, kdeReadCommand, kdeWriteCommands, parseKdeRead } from '../electron/core/sysproxy/kde';
import { MacosBackend, MacService, macApplyCommands, macRestoreCommands, parseBypass, parseProxyInfo, parseServiceList } from '../electron/core/sysproxy/macos';
import { WIN_KEY, WIN_REFRESH, parseRegQuery, windowsApplyCommands, windowsBypass, windowsRestoreCommands, windowsSnapshotFromQuery } from '../electron/core/sysproxy/windows';

const S = { host: '127.0.0.1', port: 1080, bypass: ['localhost', '127.0.0.0/8', '::1', '*.local'] };
const argv = (cs: { tool: string; args: string[] }[]): string[][] => cs.map((c) => [c.tool, ...c.args]);

describe('gnome command construction', () => {
  test('GVariant quoting survives quotes and backslashes', () => {
    assert.equal(gvariantString("it's \\ odd"), "'it\\'s \\\\ odd'");
    assert.equal(gvariantStringArray([]), '@as []');
    assert.equal(gvariantStringArray(['a', "b'c"]), "['a', 'b\\'c']");
  });

  test('apply writes mode last, restore writes it first', () => {
    const apply = gnomeSetCommands(gnomeAppliedValues(S), false);
    assert.deepEqual(apply.at(-1)!.args, ['set', 'org.gnome.system.proxy', 'mode', "'manual'"]);
    assert.deepEqual(apply[0].args.slice(0, 3), ['set', 'org.gnome.system.proxy', 'ignore-hosts']);
    assert.ok(apply.some((c) => c.args.join(' ') === "set org.gnome.system.proxy.socks host '127.0.0.1'"));
    assert.ok(apply.some((c) => c.args.join(' ') === 'set org.gnome.system.proxy.https port 1080'));
    assert.equal(apply.length, 8);
    const restore = gnomeSetCommands({ 'org.gnome.system.proxy mode': "'none'", 'org.gnome.system.proxy.http port': '8080' }, true);
    assert.deepEqual(argv(restore), [
      ['gsettings', 'set', 'org.gnome.system.proxy', 'mode', "'none'"],
      ['gsettings', 'set', 'org.gnome.system.proxy.http', 'port', '8080'],
    ]);
  });
});

describe('kde command construction and parsing', () => {
  const tools = { read: 'kreadconfig6', write: 'kwriteconfig6' };

  test('reads with a sentinel default so an absent key is told from an empty one', () => {
    assert.deepEqual(kdeReadCommand(tools, 'httpProxy').args, ['--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'httpProxy', '--default', KDE_UNSET]);
    assert.equal(parseKdeRead(`${KDE_UNSET}\n`), null);
    assert.equal(parseKdeRead('\n'), '');
    assert.equal(parseKdeRead('http://corp 3128\n'), 'http://corp 3128');
  });

  test('KIO proxy values put a space before the port and bracket IPv6', () => {
    assert.equal(kdeProxyUrl('http', '127.0.0.1', 1080), 'http://127.0.0.1 1080');
    assert.equal(kdeProxyUrl('socks', '::1', 1080), 'socks://[::1] 1080');
  });

  test('apply: everything, ReversedException off, ProxyType=1 last, then the D-Bus nudge', () => {
    const cmds = kdeWriteCommands(tools, kdeAppliedValues(S), false);
    assert.deepEqual(argv(cmds), [
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'httpProxy', 'http://127.0.0.1 1080'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'httpsProxy', 'http://127.0.0.1 1080'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'socksProxy', 'socks://127.0.0.1 1080'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'NoProxyFor', 'localhost,127.0.0.0/8,::1,*.local'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'ReversedException', 'false'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'ProxyType', '1'],
      ['dbus-send', '--type=signal', '/KIO/Scheduler', 'org.kde.KIO.Scheduler.reparseSlaveConfiguration', 'string:'],
    ]);
    assert.equal(cmds.at(-1)!.bestEffort, true);
  });

  test('restore: ProxyType first, absent keys deleted, user values verbatim', () => {
    const cmds = kdeWriteCommands(tools, { ProxyType: '1', httpProxy: 'http://corp 3128', socksProxy: null, NoProxyFor: '' }, true);
    assert.deepEqual(argv(cmds).slice(0, 4), [
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'ProxyType', '1'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'httpProxy', 'http://corp 3128'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'socksProxy', '--delete'],
      ['kwriteconfig6', '--file', 'kioslaverc', '--group', 'Proxy Settings', '--key', 'NoProxyFor', ''],
    ]);
  });
});

describe('macOS networksetup parsing and commands', () => {
  const LIST = 'An asterisk (*) denotes that a network service is disabled.\nWi-Fi\n*Bluetooth PAN\nThunderbolt Bridge\nUSB 10/100/1000 LAN\n';
  const WEB_ON = 'Enabled: Yes\nServer: corp-proxy.example\nPort: 3128\nAuthenticated Proxy Enabled: 0\n';
  const WEB_OFF = 'Enabled: No\nServer: \nPort: 0\nAuthenticated Proxy Enabled: 0\n';

  test('service list drops the legend and disabled services, keeps names with spaces and slashes', () => {
    assert.deepEqual(parseServiceList(LIST), ['Wi-Fi', 'Thunderbolt Bridge', 'USB 10/100/1000 LAN']);
  });

  test('proxy info and bypass domains', () => {
    assert.deepEqual(parseProxyInfo(WEB_ON, 'Wi-Fi', 'web'), { enabled: true, server: 'corp-proxy.example', port: 3128, authenticated: false });
    assert.deepEqual(parseProxyInfo(WEB_OFF, 'Wi-Fi', 'socks'), { enabled: false, server: '', port: 0, authenticated: false });
    assert.throws(() => parseProxyInfo('** Error: The parameters were not valid.\n', 'Wi-Fi', 'web'), (e: Error & { code?: string }) => e.code === 'ESYSPROXY_PARSE');
    assert.deepEqual(parseBypass("There aren't any bypass domains set on Wi-Fi.\n"), []);
    assert.deepEqual(parseBypass('*.local\n169.254/16\n'), ['*.local', '169.254/16']);
  });

  test('apply sets every kind and switches it on, per service; "Empty" clears a bypass list', () => {
    const cmds = argv(macApplyCommands('USB 10/100/1000 LAN', S));
    assert.deepEqual(cmds[0], ['networksetup', '-setproxybypassdomains', 'USB 10/100/1000 LAN', 'localhost', '127.0.0.0/8', '::1', '*.local']);
    assert.deepEqual(cmds.slice(1, 3), [
      ['networksetup', '-setwebproxy', 'USB 10/100/1000 LAN', '127.0.0.1', '1080'],
      ['networksetup', '-setwebproxystate', 'USB 10/100/1000 LAN', 'on'],
    ]);
    assert.ok(cmds.some((c) => c.join(' ') === 'networksetup -setsocksfirewallproxy USB 10/100/1000 LAN 127.0.0.1 1080'));
    assert.deepEqual(argv(macApplyCommands('Wi-Fi', { ...S, bypass: [] }))[0], ['networksetup', '-setproxybypassdomains', 'Wi-Fi', 'Empty']);
  });

  test('restore writes a user server back before its state; no server means just off', () => {
    const prev: MacService = {
      web: { enabled: true, server: 'corp-proxy.example', port: 3128, authenticated: false },
      secure: { enabled: false, server: 'corp-proxy.example', port: 3129, authenticated: false },
      socks: { enabled: false, server: '', port: 0, authenticated: false },
      bypass: [],
    };
    assert.deepEqual(argv(macRestoreCommands('Wi-Fi', prev)), [
      ['networksetup', '-setwebproxy', 'Wi-Fi', 'corp-proxy.example', '3128'],
      ['networksetup', '-setwebproxystate', 'Wi-Fi', 'on'],
      ['networksetup', '-setsecurewebproxy', 'Wi-Fi', 'corp-proxy.example', '3129'],
      ['networksetup', '-setsecurewebproxystate', 'Wi-Fi', 'off'],
      ['networksetup', '-setsocksfirewallproxystate', 'Wi-Fi', 'off'],
      ['networksetup', '-setproxybypassdomains', 'Wi-Fi', 'Empty'],
    ]);
  });

  test('stillApplied ignores services added or removed since', () => {
    const svc = { web: { enabled: true }, bypass: [] };
    const b = new MacosBackend();
    assert.equal(b.stillApplied({ services: { 'Wi-Fi': svc, 'iPhone USB': { web: { enabled: false }, bypass: [] } } }, { services: { 'Wi-Fi': svc, Ethernet: svc } }), true);
    assert.equal(b.stillApplied({ services: { 'Wi-Fi': { ...svc, bypass: ['x'] } } }, { services: { 'Wi-Fi': svc } }), false);
  });
});

describe('Windows registry parsing and commands', () => {
  const QUERY = [
    '',
    'HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings',
    '    User Agent    REG_SZ    Mozilla/4.0 (compatible; MSIE 8.0; Win32)',
    '    ProxyEnable    REG_DWORD    0x1',
    '    ProxyServer    REG_SZ    corp-proxy.example:3128',
    '    ProxyOverride    REG_SZ    ',
    '    AutoConfigURL    REG_SZ    http://wpad.corp/proxy.pac',
    '',
    'HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections',
    '    ProxyEnable    REG_DWORD    0x0',
    '',
  ].join('\r\n');

  test('values of the key itself, not of its subkeys; names with spaces; empty data', () => {
    const v = parseRegQuery(QUERY);
    assert.deepEqual(v.get('ProxyEnable'), { type: 'REG_DWORD', data: '0x1' });
    assert.deepEqual(v.get('User Agent'), { type: 'REG_SZ', data: 'Mozilla/4.0 (compatible; MSIE 8.0; Win32)' });
    assert.deepEqual(v.get('ProxyOverride'), { type: 'REG_SZ', data: '' });
    const snap = windowsSnapshotFromQuery(QUERY.replace(/ {4}AutoConfigURL.*\r\n/, ''));
    assert.equal(snap.values.AutoConfigURL, null);
    assert.deepEqual(snap.values.ProxyServer, { type: 'REG_SZ', data: 'corp-proxy.example:3128' });
  });

  test('bypass: CIDR becomes WinINet wildcards, IPv6 bracketed', () => {
    assert.equal(windowsBypass(['localhost', '127.0.0.0/8', '192.168.1.0/24', '10.1.2.3/32', '::1', '*.local']), 'localhost;127.*;192.168.1.*;10.1.2.3;[::1];*.local');
  });

  test('apply: server, bypass, the user\'s PAC removed, enable last, then the refresh', () => {
    const cmds = windowsApplyCommands(S, windowsSnapshotFromQuery(QUERY));
    assert.deepEqual(argv(cmds.slice(0, 4)), [
      ['reg', 'add', WIN_KEY, '/v', 'ProxyServer', '/t', 'REG_SZ', '/d', '127.0.0.1:1080', '/f'],
      ['reg', 'add', WIN_KEY, '/v', 'ProxyOverride', '/t', 'REG_SZ', '/d', 'localhost;127.*;[::1];*.local', '/f'],
      ['reg', 'delete', WIN_KEY, '/v', 'AutoConfigURL', '/f'],
      ['reg', 'add', WIN_KEY, '/v', 'ProxyEnable', '/t', 'REG_DWORD', '/d', '1', '/f'],
    ]);
    assert.equal(cmds[4], WIN_REFRESH);
    assert.equal(WIN_REFRESH.bestEffort, true);
    assert.match(WIN_REFRESH.args.at(-1)!, /InternetSetOption\(\[IntPtr\]::Zero, 39,.*InternetSetOption\(\[IntPtr\]::Zero, 37,/);
    assert.equal(windowsApplyCommands(S, windowsSnapshotFromQuery(QUERY.replace(/ {4}AutoConfigURL.*\r\n/, ''))).length, 4);
  });

  test('restore: DWORD from hex, values the user never had deleted, nothing deleted twice', () => {
    const prev = { values: { ProxyEnable: { type: 'REG_DWORD', data: '0x0' }, ProxyServer: { type: 'REG_SZ', data: 'corp:3128' }, ProxyOverride: null, AutoConfigURL: null } };
    const current = { values: { ProxyEnable: { type: 'REG_DWORD', data: '0x1' }, ProxyServer: { type: 'REG_SZ', data: '127.0.0.1:1080' }, ProxyOverride: { type: 'REG_SZ', data: 'localhost' }, AutoConfigURL: null } };
    assert.deepEqual(argv(windowsRestoreCommands(prev, current)), [
      ['reg', 'add', WIN_KEY, '/v', 'ProxyEnable', '/t', 'REG_DWORD', '/d', '0', '/f'],
      ['reg', 'add', WIN_KEY, '/v', 'ProxyServer', '/t', 'REG_SZ', '/d', 'corp:3128', '/f'],
      ['reg', 'delete', WIN_KEY, '/v', 'ProxyOverride', '/f'],
      [WIN_REFRESH.tool, ...WIN_REFRESH.args],
    ]);
  });
});

describe('backend choice and helpers', () => {
  test('desktop detection', () => {
    assert.equal(linuxDesktop({ XDG_CURRENT_DESKTOP: 'KDE' }), 'kde');
    assert.equal(linuxDesktop({ KDE_FULL_SESSION: 'true' }), 'kde');
    assert.equal(linuxDesktop({ XDG_CURRENT_DESKTOP: 'ubuntu:GNOME' }), 'gnome');
    assert.equal(linuxDesktop({ XDG_CURRENT_DESKTOP: 'X-Cinnamon' }), 'gnome');
    assert.equal(linuxDesktop({}), null);
    assert.deepEqual(backendCandidates({ platform: 'linux', env: { XDG_CURRENT_DESKTOP: 'KDE' } }), ['kde+gnome', 'kde', 'gnome']);
    assert.deepEqual(backendCandidates({ platform: 'linux', env: {} }), ['gnome', 'kde']);
    assert.deepEqual(backendCandidates({ platform: 'darwin', env: {} }), ['macos']);
    assert.deepEqual(backendCandidates({ platform: 'win32', env: { XDG_CURRENT_DESKTOP: 'KDE' } }), ['windows']);
  });

  test('wildcard listeners are reached through loopback', () => {
    assert.equal(clientHost('0.0.0.0'), '127.0.0.1');
    assert.equal(clientHost('::'), '::1');
    assert.equal(clientHost('[::1]'), '::1');
    assert.equal(clientHost('192.168.1.5'), '192.168.1.5');
    assert.equal(hostPort('::1', 1080), '[::1]:1080');
  });

  test('jsonEqual and command descriptions', () => {
    assert.equal(jsonEqual({ a: [1, { b: null }] }, { a: [1, { b: null }] }), true);
    assert.equal(jsonEqual({ a: 1 }, { a: 1, b: 2 }), false);
    assert.equal(jsonEqual([1], { 0: 1 }), false);
    assert.equal(describeCommand('networksetup', ['-setwebproxy', 'Wi-Fi 2', 'h', '1']), 'networksetup -setwebproxy "Wi-Fi 2" h 1');
  });
});

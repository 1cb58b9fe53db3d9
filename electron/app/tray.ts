/**
 * The tray icon: the MenuModel (electron/core/desktop/tray-model.ts) turned into a native menu,
 * rebuilt on stats ticks and status/path changes, at most once a second.
 */
import path from 'node:path';
import { Menu, Tray, nativeImage, type NativeImage } from 'electron';
import type { StatsTick, StatusView } from '../core/contract';
import type { EventBus } from '../core/control/handlers';
import { toMenuTemplate } from '../core/desktop/menu-template';
import { throttle, type Throttled } from '../core/desktop/throttle';
import { trayModel, type MenuAction, type MenuModel, type TrayModelOptions } from '../core/desktop/tray-model';

export interface TrayOptions {
  iconDir: string;
  bus: EventBus;
  status(): StatusView;
  options(): TrayModelOptions;
  run(action: MenuAction): void;
  /** A click on the icon itself (Windows, macOS; Linux shows the menu). */
  onClick(): void;
}

export class BraidTray {
  private readonly tray: Tray;
  private readonly icons: Record<MenuModel['icon'], NativeImage>;
  private lastTick: StatsTick | null = null;
  private readonly refreshSoon: Throttled;
  private readonly unhook: (() => void)[] = [];

  constructor(private readonly opts: TrayOptions) {
    const icon = (name: string): NativeImage => nativeImage.createFromPath(path.join(opts.iconDir, name));
    this.icons = { on: icon('tray-on.png'), off: icon('tray-off.png'), warning: icon('tray-warning.png') };
    this.tray = new Tray(this.icons.off);
    this.tray.on('click', () => opts.onClick());
    this.refreshSoon = throttle(() => this.refresh(), 1000);
    const onTick = (t: StatsTick): void => {
      this.lastTick = t;
      this.refreshSoon();
    };
    const onChange = (): void => this.refreshSoon();
    opts.bus.on('stats', onTick);
    opts.bus.on('status.changed', onChange);
    opts.bus.on('paths.changed', onChange);
    this.unhook.push(
      () => opts.bus.off('stats', onTick),
      () => opts.bus.off('status.changed', onChange),
      () => opts.bus.off('paths.changed', onChange),
    );
    this.refresh();
  }

  /** Schedules a rebuild (throttled); `now` rebuilds at once (after a click, say). */
  update(now = false): void {
    if (now) this.refresh();
    else this.refreshSoon();
  }

  private refresh(): void {
    if (this.tray.isDestroyed()) return;
    const model = trayModel(this.opts.status(), this.lastTick, this.opts.options());
    this.tray.setContextMenu(Menu.buildFromTemplate(toMenuTemplate(model, (action) => this.opts.run(action))));
    this.tray.setToolTip(model.tooltip);
    this.tray.setImage(this.icons[model.icon]);
  }

  destroy(): void {
    this.refreshSoon.cancel();
    for (const u of this.unhook.splice(0)) u();
    if (!this.tray.isDestroyed()) this.tray.destroy();
  }
}

/**
 * The MenuModel as the plain objects Electron's Menu.buildFromTemplate takes (structurally its
 * MenuItemConstructorOptions; the glue's type-check holds them to it), with clicks bound to `run`.
 */
import type { MenuAction, MenuItemModel, MenuModel } from './tray-model';

export interface TemplateItem {
  id: string;
  label?: string;
  type: MenuItemModel['type'];
  checked?: boolean;
  enabled?: boolean;
  submenu?: TemplateItem[];
  click?: () => void;
}

export function toMenuTemplate(model: MenuModel | MenuItemModel[], run: (action: MenuAction, item: MenuItemModel) => void): TemplateItem[] {
  const items = Array.isArray(model) ? model : model.items;
  return items.map((it): TemplateItem => {
    if (it.type === 'separator') return { id: it.id, type: 'separator' };
    const out: TemplateItem = { id: it.id, label: it.label, type: it.type, enabled: it.enabled ?? true };
    if (it.type === 'checkbox' || it.type === 'radio') out.checked = it.checked === true;
    if (it.submenu) out.submenu = toMenuTemplate(it.submenu, run);
    const action = it.action;
    if (action !== undefined) out.click = () => run(action, it);
    return out;
  });
}

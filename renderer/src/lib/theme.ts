/** Light, dark, or whatever the system prefers; the choice is remembered in this browser. */
export type ThemeChoice = 'auto' | 'light' | 'dark';
const KEY = 'braid.theme';

export function loadThemeChoice(): ThemeChoice {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : 'auto';
  } catch {
    return 'auto';
  }
}

export function saveThemeChoice(c: ThemeChoice): void {
  try {
    if (c === 'auto') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, c);
  } catch {
    /* storage disabled: the choice lasts for this page */
  }
}

export const nextTheme = (c: ThemeChoice): ThemeChoice => (c === 'auto' ? 'light' : c === 'light' ? 'dark' : 'auto');

export const resolvedTheme = (c: ThemeChoice, systemDark: boolean): 'light' | 'dark' => (c === 'auto' ? (systemDark ? 'dark' : 'light') : c);

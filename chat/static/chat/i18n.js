// The page's strings in the reader's language (issue 32): Django's JavaScriptCatalog defines
// `django.gettext` and friends; without it (a catalogue that failed to load) the page stays in
// English. `makemessages -d djangojs` finds the strings by these names: write
// gettext("literal"), never gettext(variable).
const catalog = () => globalThis.django ?? {};

export function gettext(text) {
  const c = catalog();
  return c.gettext ? c.gettext(text) : text;
}

export function ngettext(singular, plural, count) {
  const c = catalog();
  return c.ngettext ? c.ngettext(singular, plural, count) : count === 1 ? singular : plural;
}

// interpolate("%(name)s is ready", {name}, true), or ("%s of %s", [a, b]).
export function interpolate(format, values, named = false) {
  const c = catalog();
  if (c.interpolate) return c.interpolate(format, values, named);
  return named
    ? format.replace(/%\(\w+\)s/g, (m) => String(values[m.slice(2, -2)]))
    : format.replace(/%s/g, () => String(values.shift()));
}

// Every string of the app, in English and Russian (one table per language in i18n/), and
// the formatters of dates, numbers, durations and asset amounts for the chosen language.
import en from "../i18n/en.js";
import ru from "../i18n/ru.js";

export const TABLES = { en, ru };
export const LANGS = [["en", "English"], ["ru", "Русский"]];
const LOCALES = { en: "en-GB", ru: "ru-RU" };
let lang = "en";

export function setLang(l) {
  lang = TABLES[l] ? l : "en";
  document.documentElement.lang = lang;
}

export const getLang = () => lang;

// t("key", {n: 3}) -> the text with {n} filled; a missing key shows itself, so a gap is seen
export function t(key, vars) {
  let s = TABLES[lang][key] ?? TABLES.en[key] ?? key;
  if (typeof s === "function") s = s(vars || {});
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

export function reasonText(reason, fallback) {
  const k = `reason.${reason}`;
  return TABLES[lang][k] ? t(k) : fallback || t("reason.unknown");
}

export function fmtNumber(n) {
  return new Intl.NumberFormat(LOCALES[lang]).format(n);
}

export function fmtPercent(fraction) {
  return new Intl.NumberFormat(LOCALES[lang], { style: "percent", maximumFractionDigits: 2 }).format(fraction);
}

// integer units (Number, BigInt or string) -> "1,234.5 MUX" with the asset's precision,
// trailing zeros of the fraction dropped; grouping and decimal sign of the language
export function fmtAmount(units, precision, symbol) {
  const u = BigInt(units ?? 0);
  const neg = u < 0n;
  const a = neg ? -u : u;
  const scale = 10n ** BigInt(precision);
  const whole = a / scale;
  let frac = precision ? (a % scale).toString().padStart(precision, "0").replace(/0+$/, "") : "";
  const nf = new Intl.NumberFormat(LOCALES[lang]);
  const dec = nf.formatToParts(1.5).find((p) => p.type === "decimal").value;
  let text = nf.format(whole) + (frac ? dec + frac : "");
  if (neg) text = "−" + text;
  return symbol ? `${text}\u00a0${symbol}` : text;
}

// "12.5" / "12,5" in units of the asset; errors name what is wrong
export function parseAmount(text, precision) {
  const s = String(text ?? "").trim().replace(/\s/g, "").replace(",", ".");
  if (!/^\d+(\.\d*)?$/.test(s)) return { error: "form.bad_amount" };
  const [w, f = ""] = s.split(".");
  if (f.length > precision) return { error: "form.too_many_decimals", vars: { n: precision } };
  const units = BigInt(w) * 10n ** BigInt(precision) + BigInt((f + "0".repeat(precision)).slice(0, precision) || "0");
  if (units > 2n ** 63n - 1n) return { error: "form.too_large" };
  return { units };
}

export function fmtDate(ts) {
  return new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "medium", timeStyle: "short" }).format(new Date(ts * 1000));
}

// seconds -> "3 days" / "3 дня": whole days from two days up (a half-life of "179 days
// 23 hours" says less than "180 days"), else the largest unit and the one below it
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const unitText = (n, unit) => new Intl.NumberFormat(LOCALES[lang], { style: "unit", unit, unitDisplay: "long" }).format(n);
  if (s >= 2 * 86400) return unitText(Math.round(s / 86400), "day");
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  const parts = [];
  let rest = s;
  for (const [unit, size] of units) {
    if (rest >= size || (unit === "second" && parts.length === 0)) {
      const n = Math.floor(rest / size);
      rest -= n * size;
      parts.push(unitText(n, unit));
      if (parts.length === 2) break;
    } else if (parts.length) break;
  }
  return parts.join(" ");
}

export function fmtRelative(seconds) {
  const rtf = new Intl.RelativeTimeFormat(LOCALES[lang], { numeric: "auto" });
  const a = Math.abs(seconds);
  if (a < 60) return rtf.format(Math.round(seconds), "second");
  if (a < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}

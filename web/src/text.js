// Text helpers that reproduce Python's string semantics where the answers depend on them.

/** Python's str.isspace() characters (str.strip() removes these; JavaScript's trim() differs:
 * it strips U+FEFF, which Python keeps, and keeps U+001C..U+001F and U+0085, which Python strips). */
const PY_SPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

/** @param {string} s @returns {string} s without leading/trailing Python whitespace */
export function pyStrip(s) {
  const cps = Array.from(s);
  let a = 0, b = cps.length;
  while (a < b && PY_SPACE.has(cps[a].codePointAt(0))) a++;
  while (b > a && PY_SPACE.has(cps[b - 1].codePointAt(0))) b--;
  return cps.slice(a, b).join("");
}

/** UTF-8 bytes of s, lone surrogates written as their 3-byte form (Python's "surrogatepass").
 * @param {string} s @returns {Uint8Array} */
export function wtf8(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

// ignoreBOM: a TextDecoder otherwise drops a leading U+FEFF (the WHATWG "BOM sniffing"), which
// Python's bytes.decode("utf-8") keeps: an intent "\ufeff..." would lose its BOM before tokenizing.
const DECODER = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** bytes -> text, invalid sequences as U+FFFD (Python's errors="replace": both use maximal subparts);
 * a leading U+FEFF is kept, as Python keeps it. */
export function decodeUtf8(bytes) {
  return DECODER.decode(bytes);
}

/** What the Python runtime feeds the tokenizer: s.encode("utf-8", "surrogatepass").decode("utf-8", "replace"). */
export function scalarText(s) {
  return decodeUtf8(wtf8(s));
}

// The intent rule of vedit/intents.py: the same refusals, with the same reasons.
import { pyStrip, wtf8 } from "./text.js";

/**
 * Why `intent` cannot be answered, or null when it can.
 * @param {unknown} intent
 * @param {number|null} maxBytes the limit in UTF-8 bytes (the site's web.json carries Python's)
 * @returns {string|null}
 */
export function intentProblem(intent, maxBytes) {
  if (typeof intent !== "string") return `intents are str, got ${intent === null ? "NoneType" : typeof intent}`;
  const size = wtf8(intent).length;
  if (maxBytes !== null && size > maxBytes) return `${size} bytes, over the limit of ${maxBytes} bytes per intent`;
  if (!pyStrip(intent)) return "empty intent";
  return null;
}

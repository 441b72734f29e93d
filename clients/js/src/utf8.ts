/** The length of a string in UTF-8 bytes (what goes on the wire), without TextEncoder. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // a surrogate pair: one code point beyond the BMP
      i += 1;
    } else n += 3;
  }
  return n;
}

/** Whether `s` is more than `max` UTF-8 bytes long. */
export function utf8Exceeds(s: string, max: number): boolean {
  if (s.length > max) return true; // every UTF-16 unit is at least one byte
  if (s.length * 3 <= max) return false; // and at most three
  return utf8Length(s) > max;
}

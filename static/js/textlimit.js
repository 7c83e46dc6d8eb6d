// What the server accepts as a chat message's text (docs/protocol.md, chat message schema):
// 1..4,000 characters after trimming. The composer counts the same way the server does (code
// points of the trimmed text), shows a counter near the limit and blocks sending over it, rather
// than cutting a paste short without a word.

export const MAX_TEXT = 4000;
export const COUNTER_FROM = 3500;
const number = new Intl.NumberFormat("en");

export function textLength(text) {
  return [...text.trim()].length;
}

// {length, over, shown, text}: `shown` is false far from the limit.
export function counter(text) {
  const length = textLength(text);
  const over = length > MAX_TEXT;
  const label = `${number.format(length)} / ${number.format(MAX_TEXT)}${over ? " — too long" : ""}`;
  return { length, over, shown: length >= COUNTER_FROM, text: label };
}

// A form field's counter against the server's `max_length` (code points of the text as sent):
// {length, over, text}; always shown.
export function fieldCounter(text, max) {
  const length = [...text].length;
  const over = length > max;
  return { length, over, text: `${number.format(length)} / ${number.format(max)}${over ? " — too long" : ""}` };
}

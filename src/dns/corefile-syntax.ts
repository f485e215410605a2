// The Corefile's syntax, Caddy v1's: whitespace-separated tokens, "quoted" and
// `backquoted` tokens, `#` comments, `{ }` option blocks, `{$VAR}` and `{$VAR:default}`
// from the environment; and the block structure over those tokens: server blocks
// `key [key...] { ... }`, each a list of plugin lines, each line with an optional block
// of options. Nothing here knows what a key or a plugin means (corefile-addresses.ts and
// corefile-plugins.ts do). A problem is reported through `at` with its line and reading
// goes on, so that every problem of the file is reported at once.
export interface Token {
  text: string;
  line: number;
  /** Quoted: never `{` or `}` syntax. */
  quoted: boolean;
}

export interface Directive {
  name: string;
  args: Token[];
  line: number;
  /** The `{ }` block's lines, each a name and its arguments; null without a block. */
  block: Directive[] | null;
}

export function tokenize(text: string, env: NodeJS.ProcessEnv, at: (line: number, m: string) => void): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '\n') { line++; i++; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const start = line;
    if (c === '"' || c === '`') {
      let value = '';
      i++;
      let closed = false;
      while (i < n) {
        const d = text[i]!;
        if (d === '\\' && c === '"' && (text[i + 1] === '"' || text[i + 1] === '\\')) { value += text[i + 1]; i += 2; continue; }
        if (d === c) { closed = true; i++; break; }
        if (d === '\n') line++;
        value += d;
        i++;
      }
      if (!closed) at(start, `unterminated quoted token ${c}${value.slice(0, 20)}`);
      tokens.push({ text: expandEnv(value, env, start, at), line: start, quoted: true });
      continue;
    }
    let j = i;
    while (j < n && !' \t\r\n'.includes(text[j]!)) j++;
    tokens.push({ text: expandEnv(text.slice(i, j), env, start, at), line: start, quoted: false });
    i = j;
  }
  return tokens;
}

/** `{$VAR}` and `{$VAR:default}` (Caddy v1; CoreDNS documents the first). */
function expandEnv(text: string, env: NodeJS.ProcessEnv, line: number, at: (line: number, m: string) => void): string {
  if (!text.includes('{$')) return text;
  return text.replace(/\{\$([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    at(line, `environment variable ${name} is not set`);
    return '';
  });
}

interface RawBlock {
  keys: Token[];
  line: number;
  directives: Directive[];
}

function isOpen(t: Token | undefined): boolean { return t !== undefined && !t.quoted && t.text === '{'; }
function isClose(t: Token | undefined): boolean { return t !== undefined && !t.quoted && t.text === '}'; }

export function parseBlocks(tokens: Token[], at: (line: number, m: string) => void): RawBlock[] {
  const blocks: RawBlock[] = [];
  let i = 0;
  while (i < tokens.length) {
    const keys: Token[] = [];
    const line = tokens[i]!.line;
    while (i < tokens.length && !isOpen(tokens[i]) && !isClose(tokens[i])) {
      // "a, b" and "a,b" separate keys as well as spaces do.
      for (const part of tokens[i]!.text.split(',')) if (part !== '') keys.push({ ...tokens[i]!, text: part });
      i++;
    }
    if (i >= tokens.length || isClose(tokens[i])) {
      at(tokens[Math.min(i, tokens.length - 1)]!.line, keys.length > 0 ? `server block "${keys.map((k) => k.text).join(' ')}" needs a "{ ... }" body` : 'unexpected "}"');
      i++;
      continue;
    }
    if (keys.length === 0) at(tokens[i]!.line, 'a server block needs at least one zone before "{", such as ".:53"');
    i++; // '{'
    const directives: Directive[] = [];
    let closed = false;
    while (i < tokens.length) {
      const t = tokens[i]!;
      if (isClose(t)) { closed = true; i++; break; }
      if (isOpen(t)) { at(t.line, 'unexpected "{": a block belongs at the end of a plugin\'s line'); i = skipBlock(tokens, i); continue; }
      const d: Directive = { name: t.text, args: [], line: t.line, block: null };
      i++;
      while (i < tokens.length && tokens[i]!.line === d.line && !isOpen(tokens[i]) && !isClose(tokens[i])) d.args.push(tokens[i++]!);
      if (isOpen(tokens[i]) && tokens[i]!.line === d.line) {
        i++;
        d.block = [];
        let subClosed = false;
        while (i < tokens.length) {
          const s = tokens[i]!;
          if (isClose(s)) { subClosed = true; i++; break; }
          if (isOpen(s)) { at(s.line, `unexpected "{" inside the options of "${d.name}"`); i = skipBlock(tokens, i); continue; }
          const o: Directive = { name: s.text, args: [], line: s.line, block: null };
          i++;
          while (i < tokens.length && tokens[i]!.line === o.line && !isOpen(tokens[i]) && !isClose(tokens[i])) o.args.push(tokens[i++]!);
          if (isOpen(tokens[i]) && tokens[i]!.line === o.line) { at(o.line, `option "${o.name}" of "${d.name}" cannot have a block`); i = skipBlock(tokens, i); }
          d.block.push(o);
        }
        if (!subClosed) at(d.line, `the options of "${d.name}" are not closed with "}"`);
      }
      directives.push(d);
    }
    if (!closed) at(line, 'the server block is not closed with "}"');
    blocks.push({ keys, line, directives });
  }
  return blocks;
}

/** Skips from a '{' past its matching '}'. */
function skipBlock(tokens: Token[], i: number): number {
  let depth = 0;
  for (; i < tokens.length; i++) {
    if (isOpen(tokens[i])) depth++;
    else if (isClose(tokens[i]) && --depth === 0) return i + 1;
  }
  return i;
}

// The files of a manifest directory (manifest-dir.ts), one record each: what was last
// read, its last good objects and its problems. A text that fails validation leaves
// the file's last good objects in place (setParsed), and an emptied file is believed
// only on a second read.
// Resource versions are the directory's own: a counter that moves whenever an object's
// text (or its place in its file) changes, so an unchanged object keeps its version
// and its identity across re-reads.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseManifest, textDigest, type ManifestMemo } from './manifest.ts';
import { objectKey, type K8sObject } from './objects.ts';

export interface FileState {
  /** inode, size and mtime: a change means the file must be re-read. */
  statKey: string;
  /** textDigest of the text last read ('' when none could be). */
  textDigest: string;
  /** The last good objects. */
  objects: K8sObject[];
  /** Problems of the current text (objects are then from an earlier text). */
  parseProblems: string[];
  /** Problems of duplicates across files. */
  duplicateProblems: string[];
  /** What onProblems last said for this file, joined. */
  reported: string;
  /** The file read empty once; a second empty read confirms it (see readFile). */
  emptyOnce: boolean;
  /** Its documents' texts and objects at the last good parse: a re-read parses only the changed ones. */
  memo: ManifestMemo | undefined;
}

export class ManifestFiles {
  /** Every manifest file known, by name. */
  readonly states = new Map<string, FileState>();
  /** Files read again since the last publish, with their objects before (see ManifestDir#publishTouched). */
  touched = new Map<string, readonly K8sObject[]>();
  /** A file appeared or went away since the last publish: the next one merges every file. */
  structural = true;
  readonly #dir: string;
  readonly #problems: (file: string, problems: readonly string[]) => void;
  readonly #recheck: (name: string) => void;
  /** The last resource version handed out. */
  #version = 0;

  /** `problems` reports a file's problems; `recheck` reads a file again soon. */
  constructor(dir: string, problems: (file: string, problems: readonly string[]) => void, recheck: (name: string) => void) {
    this.#dir = dir;
    this.#problems = problems;
    this.#recheck = recheck;
  }

  dropFile(name: string): void {
    const state = this.states.get(name);
    this.states.delete(name);
    this.structural = true;
    if (state !== undefined && state.reported !== '') this.#problems(name, []);
  }

  async readFile(name: string, forced: boolean): Promise<void> {
    const path = join(this.#dir, name);
    let statKey: string;
    let text: string;
    try {
      const st = await stat(path);
      if (!st.isFile()) return;
      statKey = `${st.ino}:${st.size}:${st.mtimeMs}`;
      const state = this.states.get(name);
      if (state !== undefined && state.statKey === statKey && !forced) return;
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.dropFile(name);
      else this.#setParsed(name, '', '', null, [`${name}: cannot read the file: ${(err as Error).message}`]);
      return;
    }
    const state = this.states.get(name);
    const digest = textDigest(text);
    if (state !== undefined && state.textDigest === digest) {
      state.statKey = statKey;
      return;
    }
    // writeFile truncates before it writes: a read in between sees an empty file, which
    // would delete every object of it. Believe an emptied file only on a second look
    // (writers that rename a finished file into place never show this state).
    if (state !== undefined && state.objects.length > 0 && !state.emptyOnce && !/\S/.test(text)) {
      state.emptyOnce = true;
      this.#recheck(name);
      return;
    }
    if (state !== undefined) state.emptyOnce = false;
    const parsed = parseManifest(text, name, state?.memo);
    this.#setParsed(name, statKey, digest, parsed.problems.length === 0 ? parsed.objects : null, parsed.problems, parsed.memo);
  }

  /** objects null = the text was bad: keep the last good objects. */
  #setParsed(name: string, statKey: string, textDigest: string, objects: K8sObject[] | null, problems: string[], memo?: ManifestMemo): void {
    const known = this.states.get(name);
    if (known === undefined) this.structural = true;
    else if (!this.touched.has(name)) this.touched.set(name, known.objects);
    const state = known ?? { statKey, textDigest, objects: [], parseProblems: [], duplicateProblems: [], reported: '', emptyOnce: false, memo: undefined };
    state.statKey = statKey;
    state.textDigest = textDigest;
    if (objects !== null) {
      state.objects = this.#versioned(state.objects, objects);
      // The memo must hold the objects as versioned (an unchanged one is its earlier self).
      if (memo !== undefined) {
        const final = new Map(objects.map((obj, i) => [obj, state.objects[i]!]));
        memo.objects = memo.objects.map((list) => list.map((obj) => final.get(obj) ?? obj));
      }
      state.memo = memo;
    }
    state.parseProblems = problems;
    this.states.set(name, state);
  }

  /**
   * Freshly parsed objects of a file with their resource versions: an object equal to
   * its earlier version in the file (apart from the version) is that earlier object;
   * every other one gets the next version number.
   */
  #versioned(before: readonly K8sObject[], parsed: K8sObject[]): K8sObject[] {
    const earlier = new Map(before.map((obj) => [objectKey(obj), obj]));
    return parsed.map((obj) => {
      const old = earlier.get(objectKey(obj));
      // Kept from the memo: the document's text did not change.
      if (old === obj) return old;
      if (old !== undefined) {
        obj.metadata.resourceVersion = old.metadata.resourceVersion;
        if (JSON.stringify(old) === JSON.stringify(obj)) return old;
      }
      obj.metadata.resourceVersion = String(++this.#version);
      return obj;
    });
  }
}

// A deterministic synthetic corpus: short, simple English stories made from templates.
//
// Why this exists: the main command must work offline with no files, and a learner should
// see a ~1M-parameter model learn something in minutes on a CPU. Real text (TinyStories) is
// too varied for a model that small to get far in that time; random text has nothing to
// learn. These stories sit in between, on purpose:
//
//   - a small closed vocabulary (under 300 distinct words), so that a small tokenizer covers
//     it and the model's embedding table is not mostly unused rows;
//   - regular grammar with agreement that can only be got right by looking back: a
//     character's pronoun (he/she) and name recur sentences later, "a" vs "an" depends on
//     the next word, the friend who arrives is the one who later helps;
//   - a little plot with long-range structure: someone wants something, there is a problem,
//     a friend comes, the way the problem is solved depends on which problem it was, and
//     the ending refers back to the object and the friend;
//   - dialogue in quotes, so the model learns to open and close quotation marks.
//
// So a model first learns the frequent words (loss falls below the unigram entropy), then
// the sentence frames, then the agreement and the plot links — a visible progression.
//
// Everything is drawn from one seeded Rng (src/tensor/random.ts): the same seed gives the
// same corpus, byte for byte, in Node and in the browser. No Node imports here.
import { Rng } from '../tensor/random.ts';

export interface SyntheticCorpusOptions {
  /** Number of stories (one document each). 2,500 stories is about 1.6 MB of text. */
  stories?: number;
  /** Seed for the generator: same seed, same corpus. */
  seed?: number;
}

/** Default number of stories: about 1.6 MB of text, generated in well under a second. */
export const DEFAULT_SYNTHETIC_STORIES = 2500;

// ---- vocabularies -------------------------------------------------------------------------

type Gender = 'he' | 'she';
interface Character { name: string; kind: string; g: Gender }

const GIRLS = ['Lily', 'Mia', 'Sara', 'Anna', 'Emma', 'Zoe', 'Lucy', 'Ella', 'Rosa', 'Nina', 'Amy', 'Kate'];
const BOYS = ['Tom', 'Ben', 'Max', 'Sam', 'Leo', 'Jack', 'Tim', 'Dan', 'Finn', 'Noah', 'Bob', 'Eli'];
// kinds of character; "an" is chosen automatically for the ones that start with a vowel
const KINDS = ['girl', 'boy', 'cat', 'dog', 'bunny', 'bear', 'fox', 'bird', 'duck', 'mouse', 'owl', 'frog', 'elephant', 'pig'];
const KIND_ADJ = ['little', 'small', 'kind', 'happy', 'curious', 'brave', 'shy', 'funny', 'old', 'young'];
const PLACES = ['park', 'forest', 'garden', 'beach', 'farm', 'town', 'river', 'hill', 'school', 'house', 'meadow', 'lake'];
const OBJECTS = ['ball', 'kite', 'apple', 'hat', 'book', 'toy car', 'balloon', 'shell', 'flower', 'cookie', 'drum', 'boat', 'umbrella', 'box', 'star', 'ring'];
const COLORS = ['red', 'blue', 'green', 'yellow', 'big', 'shiny', 'pretty', 'orange', 'purple', 'little'];
const ACTIVITIES = ['play outside', 'sing songs', 'run fast', 'read books', 'draw pictures', 'dance', 'jump in puddles', 'look at the sky', 'help his mom', 'climb trees'];
const TIMES = ['One day', 'One morning', 'One sunny day', 'One evening', 'One cold day', 'One windy day'];
const WEATHER = ['The sun was warm.', 'The wind was blowing.', 'The birds were singing.', 'The sky was blue.', 'It was a little cold.'];
const SAD = ['sad', 'upset', 'worried', 'unhappy'];
const HAPPY = ['happy', 'glad', 'excited', 'proud'];

// A problem and the solution that matches it. The link between the two is what the model
// has to carry across several sentences: the problem line and the fix line share an idea.
interface Problem {
  /** "But the kite was ..." */
  problem: string;
  /** what the hero tells the friend: "I cannot ..." */
  complaint: string;
  /** what the hero tries first, and fails ({H} = hero's pronoun, {O} = object) */
  attempt: string;
  /** how the friend solves it ({X} = friend's pronoun, {O} = object) */
  fix: string;
}
const PROBLEMS: Problem[] = [
  { problem: 'up in a tall tree', attempt: '{H} jumped and jumped, but the {O} was too high', complaint: 'I cannot reach the {O}. It is too high', fix: '{X} climbed up the tree and brought the {O} down' },
  { problem: 'stuck in the mud', attempt: '{H} pulled the {O}, but it did not move', complaint: 'The {O} is stuck in the mud', fix: '{X} pulled and pulled until the {O} came out of the mud' },
  { problem: 'on the other side of the river', attempt: '{H} looked at the water, but it was too deep', complaint: 'I cannot get across the river', fix: '{X} found a log, and they walked across the river on it' },
  { problem: 'under a heavy rock', attempt: '{H} pushed the rock, but it did not move', complaint: 'The rock is too heavy for me', fix: 'they pushed the rock together, and it rolled away' },
  { problem: 'inside a locked box', attempt: '{H} tried to open the box, but it was locked', complaint: 'I do not have the key', fix: '{X} looked around and found the key under a leaf' },
  { problem: 'lost in the tall grass', attempt: '{H} looked and looked, but the grass was too tall', complaint: 'I cannot find the {O} in the grass', fix: '{X} looked with sharp eyes and found the {O} in the grass' },
];

// Endings refer back to the object and the friend.
const MORALS = [
  'Friends help each other.',
  'It is good to ask for help.',
  'Sharing makes everyone happy.',
  'A good friend is better than any toy.',
];

// ---- small grammar helpers ----------------------------------------------------------------

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)];
const article = (word: string) => (/^[aeiou]/i.test(word) ? 'an' : 'a');
const withArticle = (phrase: string) => `${article(phrase)} ${phrase}`;
const cap = (s: string) => s[0].toUpperCase() + s.slice(1);
const obj = (g: Gender) => (g === 'he' ? 'him' : 'her');
const pos = (g: Gender) => (g === 'he' ? 'his' : 'her');

function makeCharacter(rng: Rng, avoid?: Character): Character {
  for (;;) {
    const g: Gender = rng.int(2) === 0 ? 'he' : 'she';
    const name = pick(rng, g === 'he' ? BOYS : GIRLS);
    // the kind must agree with the gender for people; animals can be either
    let kind = pick(rng, KINDS);
    if (kind === 'girl' && g === 'he') kind = 'boy';
    if (kind === 'boy' && g === 'she') kind = 'girl';
    if (!avoid || avoid.name !== name) return { name, kind, g };
  }
}

// ---- one story ----------------------------------------------------------------------------

/** The facts a story was built from (chat-synthetic.ts asks questions about them). */
export interface StoryFacts {
  hero: { name: string; kind: string };
  friend: { name: string; kind: string };
  place: string;
  object: string;
}

/** One story and its facts, drawn from `rng` (the same draws as the corpus makes). */
export function syntheticStory(rng: Rng): { text: string; facts: StoryFacts } {
  const hero = makeCharacter(rng);
  const friend = makeCharacter(rng, hero);
  const he = hero.g, He = cap(he);
  const fx = friend.g, Fx = cap(fx);
  const place = pick(rng, PLACES);
  const object = pick(rng, OBJECTS);
  const color = pick(rng, COLORS);
  const thing = `${color} ${object}`;
  const p = pick(rng, PROBLEMS);
  const fill = (s: string) => s.replaceAll('{X}', fx).replaceAll('{H}', he).replaceAll('{O}', object);
  const s: string[] = [];

  // opening: who, and what they like
  if (rng.int(2) === 0) {
    s.push(`Once upon a time, there was ${withArticle(`${pick(rng, KIND_ADJ)} ${hero.kind}`)} named ${hero.name}.`);
  } else {
    s.push(`${hero.name} was ${withArticle(`${pick(rng, KIND_ADJ)} ${hero.kind}`)} who lived near the ${place}.`);
  }
  const activity = pick(rng, ACTIVITIES).replace('his', pos(he));
  s.push(`${He} loved to ${activity}.`);

  // the want
  s.push(`${pick(rng, TIMES)}, ${hero.name} went to the ${place}.`);
  if (rng.int(2) === 0) s.push(pick(rng, WEATHER));
  s.push(`There ${he} saw ${withArticle(thing)}.`);
  s.push(rng.int(2) === 0 ? `${He} wanted the ${object} very much.` : `"I want that ${object}!" said ${hero.name}.`);

  // the problem
  s.push(`But the ${object} was ${p.problem}.`);
  s.push(`${cap(fill(p.attempt))}.`);
  s.push(`${hero.name} felt ${pick(rng, SAD)}.`);

  // the friend arrives and asks; the hero explains (dialogue)
  s.push(`Then ${hero.name}'s friend ${friend.name} the ${friend.kind} came by.`);
  s.push(rng.int(2) === 0 ? `"Why are you ${pick(rng, SAD)}, ${hero.name}?" asked ${friend.name}.` : `"What is wrong?" asked ${friend.name}.`);
  s.push(`"${fill(p.complaint)}," said ${hero.name}.`);
  s.push(`"Do not worry. I will help you," said ${friend.name}.`);

  // the resolution matches the problem
  s.push(`${cap(fill(p.fix))}.`);
  s.push(`${hero.name} was so ${pick(rng, HAPPY)}. ${He} hugged ${friend.name} and said, "Thank you, ${friend.name}!"`);

  // ending: share, play, or a moral; all refer back to the object and the friend
  const ending = rng.int(3);
  if (ending === 0) s.push(`${hero.name} and ${friend.name} played with the ${object} all day.`);
  else if (ending === 1) s.push(`${He} let ${friend.name} hold the ${object} too, and ${fx} smiled at ${obj(he)}.`);
  else s.push(`From that day on, ${hero.name} and ${friend.name} were best friends. ${pick(rng, MORALS)}`);
  if (rng.int(3) === 0) s.push(`${Fx} went home happy.`);
  const facts = { hero: { name: hero.name, kind: hero.kind }, friend: { name: friend.name, kind: friend.kind }, place, object };
  return { text: s.join(' '), facts };
}

/** Generate `stories` stories deterministically from `seed`: one document per story. */
export function generateSyntheticCorpus(opts: SyntheticCorpusOptions = {}): string[] {
  const n = opts.stories ?? DEFAULT_SYNTHETIC_STORIES;
  if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`generateSyntheticCorpus: stories must be a non-negative integer, got ${n}`);
  const rng = new Rng(opts.seed ?? 0);
  const docs: string[] = [];
  for (let i = 0; i < n; i++) docs.push(syntheticStory(rng).text);
  return docs;
}

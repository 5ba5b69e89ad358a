"""Just enough SQL text structure to rewrite an aggregate query into incremental steps.

DataFusion has already planned the query (so it is valid SQL) before this runs; what we need
from the text is where the top-level clauses are, the select items and their aliases, the
GROUP BY items, and every aggregate call with its arguments, ORDER BY, FILTER and WITHIN GROUP
parts. A tokenizer that knows strings, quoted identifiers and comments is enough for that:
rewriting works on character spans of the original text, so what we do not touch stays exactly
as the user wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<str>[eE]?'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op>::|<=|>=|<>|!=|\|\||=>|->>|->|[-+*/%<>=~!&|^\[\]{}:;.,()])
""", re.VERBOSE | re.DOTALL)
# LIMIT/OFFSET and named WINDOW clauses never get here: analyze() refuses them from the plan
_CLAUSES = {"select", "from", "where", "group", "having", "order", "union", "intersect", "except"}
KEYWORDS = {"and", "or", "not", "null", "true", "false", "is", "in", "like", "ilike", "between", "case", "when",
            "then", "else", "end", "as", "cast", "try_cast", "interval", "distinct", "all", "exists", "asc", "desc",
            "nulls", "first", "last", "filter", "within", "group", "order", "by", "similar", "escape", "over",
            "date", "timestamp", "time", "at", "zone", "any", "some", "unknown"}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, qident, str, num, op
    text: str
    start: int
    end: int

    @property
    def word(self) -> str:
        """Lower-cased identifier or keyword; '' for anything else."""
        return self.text.lower() if self.kind == "ident" else ""

    def norm(self) -> str:
        """How the token compares: identifiers case-insensitively, quoted ones exactly."""
        return self.text.lower() if self.kind == "ident" else self.text


def tokenize(sql: str) -> list[Token]:
    """Significant tokens (no whitespace, no comments); ValueError on a character SQL cannot hold."""
    tokens, pos = [], 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if not match:
            raise ValueError(f"unexpected character {sql[pos]!r} at offset {pos}")
        kind = match.lastgroup or ""
        if kind not in ("ws", "comment"):
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
        pos = match.end()
    return tokens


@dataclass(frozen=True)
class Span:
    """Tokens [first, last) of the query, with the text they cover."""

    tokens: tuple[Token, ...]
    sql: str

    @property
    def text(self) -> str:
        return self.sql[self.tokens[0].start:self.tokens[-1].end] if self.tokens else ""


@dataclass(frozen=True)
class SelectItem:
    expr: Span
    alias: str | None


@dataclass(frozen=True)
class AggregateCall:
    """One aggregate call as written: `name([DISTINCT] args [ORDER BY ...]) [WITHIN GROUP (ORDER BY ...)]
    [FILTER (WHERE ...)]`."""

    name: str
    distinct: bool
    args: tuple[Span, ...]
    order_by: tuple[tuple[Span, str], ...]  # (expression, direction text such as "DESC NULLS LAST")
    within_group: tuple[tuple[Span, str], ...]
    filter: Span | None
    start: int  # character span of the whole call, suffixes included
    end: int


@dataclass
class QueryText:
    """The top-level clauses of one SELECT query."""

    sql: str
    prefix: str  # WITH ... before the main SELECT
    distinct: bool
    select: list[SelectItem]
    from_where: str  # "FROM ... [WHERE ...]" as written
    group_by: list[Span]
    having: Span | None
    order_by: Span | None


def split_query(sql: str) -> QueryText:
    """The clauses of the outermost SELECT; ValueError for shapes a rewrite cannot handle."""
    sql = sql.strip().rstrip(";")
    tokens = tokenize(sql)
    starts: dict[str, int] = {}
    for i, token in top_level(tokens):
        if token.word not in _CLAUSES:
            continue
        word = token.word
        if word in ("group", "order") and (i + 1 >= len(tokens) or tokens[i + 1].word != "by"):
            continue
        if word in ("union", "intersect", "except"):
            raise ValueError(f"{word.upper()} of several queries")
        if word in starts:
            raise ValueError(f"two top-level {word.upper()} clauses")
        starts[word] = i
    if "select" not in starts or "from" not in starts:
        raise ValueError("no SELECT ... FROM at the top level")
    order = sorted(starts.items(), key=lambda kv: kv[1])

    def clause(word: str, skip: int) -> list[Token]:
        if word not in starts:
            return []
        begin = starts[word]
        after = [pos for _, pos in order if pos > begin]
        return tokens[begin + skip:(after[0] if after else len(tokens))]

    select_tokens = clause("select", 1)
    distinct = bool(select_tokens) and select_tokens[0].word in ("distinct", "all")
    if distinct:
        distinct = select_tokens[0].word == "distinct"
        select_tokens = select_tokens[1:]
    from_tokens = clause("from", 0) + clause("where", 0)
    group_tokens = clause("group", 2)
    having_tokens = clause("having", 1)
    order_tokens = clause("order", 2)
    main = tokens[starts["select"]]
    return QueryText(
        sql=sql,
        prefix=sql[:main.start],
        distinct=distinct,
        select=[_select_item(part, sql) for part in split_commas(select_tokens)],
        from_where=sql[from_tokens[0].start:from_tokens[-1].end],
        group_by=[Span(tuple(part), sql) for part in split_commas(group_tokens)],
        having=Span(tuple(having_tokens), sql) if having_tokens else None,
        order_by=Span(tuple(order_tokens), sql) if order_tokens else None,
    )


def top_level(tokens: list[Token] | tuple[Token, ...]) -> Iterator[tuple[int, Token]]:
    """(index, token) of the tokens outside any parentheses or brackets (the brackets themselves excluded)."""
    depth = 0
    for i, token in enumerate(tokens):
        if token.text in ("(", "["):
            depth += 1
        elif token.text in (")", "]"):
            depth -= 1
        elif depth == 0:
            yield i, token


def split_commas(tokens: list[Token] | tuple[Token, ...]) -> list[list[Token]]:
    """Comma-separated parts at depth 0."""
    cuts = [i for i, token in top_level(tokens) if token.text == ","]
    bounds = zip([-1, *cuts], [*cuts, len(tokens)], strict=True)
    return [part for start, end in bounds if (part := list(tokens[start + 1:end]))]


def _select_item(tokens: list[Token], sql: str) -> SelectItem:
    if len(tokens) >= 3 and tokens[-2].word == "as" and tokens[-1].kind in ("ident", "qident"):
        return SelectItem(Span(tuple(tokens[:-2]), sql), identifier(tokens[-1]))
    if (len(tokens) >= 2 and tokens[-1].kind in ("ident", "qident") and tokens[-1].word not in KEYWORDS
            and (tokens[-2].text == ")" or tokens[-2].kind in ("ident", "qident", "str", "num"))
            and tokens[-2].text != "."):
        return SelectItem(Span(tuple(tokens[:-1]), sql), identifier(tokens[-1]))
    return SelectItem(Span(tuple(tokens), sql), None)


def identifier(token: Token) -> str:
    """The name an (optionally quoted) identifier token resolves to: unquoted ones lower-cased."""
    return token.text[1:-1].replace('""', '"') if token.kind == "qident" else token.text.lower()


def matching_paren(tokens: list[Token] | tuple[Token, ...], open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(tokens)):
        if tokens[i].text == "(":
            depth += 1
        elif tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def calls(span: Span, names: set[str]) -> list[tuple[int, int, str]]:
    """(first token, last token, name) of every call to one of `names` in `span`, outermost only."""
    tokens = span.tokens
    found, i = [], 0
    while i < len(tokens) - 1:
        token = tokens[i]
        if (token.word in names and tokens[i + 1].text == "(" and (i == 0 or tokens[i - 1].text != ".")):
            close = matching_paren(tokens, i + 1)
            found.append((i, close, token.word))
            i = close + 1
        else:
            i += 1
    return found


def aggregate_calls(span: Span, names: set[str]) -> list[AggregateCall]:
    """Every aggregate call in `span` (not nested in another one), with its suffixes."""
    tokens, sql = span.tokens, span.sql
    result = []
    for first, close, name in calls(span, names):
        inner = list(tokens[first + 2:close])
        distinct = bool(inner) and inner[0].word == "distinct"
        if inner and inner[0].word in ("distinct", "all"):
            inner = inner[1:]
        order_at = _depth0_keyword(inner, "order", "by")
        order_by: tuple[tuple[Span, str], ...] = ()
        if order_at is not None:
            order_by = _order_items(inner[order_at + 2:], sql)
            inner = inner[:order_at]
        args = tuple(Span(tuple(part), sql) for part in split_commas(inner))
        last = close
        within: tuple[tuple[Span, str], ...] = ()
        filter_span = None
        while True:
            nxt = tokens[last + 1:last + 4]
            if len(nxt) == 3 and nxt[0].word == "within" and nxt[1].word == "group" and nxt[2].text == "(":
                end = matching_paren(tokens, last + 3)
                body = list(tokens[last + 4:end])
                within = _order_items(body[2:], sql) if len(body) > 2 and body[0].word == "order" else ()
                last = end
            elif len(nxt) >= 2 and nxt[0].word == "filter" and nxt[1].text == "(":
                end = matching_paren(tokens, last + 2)
                body = tokens[last + 3:end]
                if body and body[0].word == "where":
                    body = body[1:]
                filter_span = Span(tuple(body), sql)
                last = end
            else:
                break
        result.append(AggregateCall(name, distinct, args, order_by, within, filter_span,
                                    tokens[first].start, tokens[last].end))
    return result


def _depth0_keyword(tokens: list[Token], first: str, second: str) -> int | None:
    for i, token in top_level(tokens):
        if token.word == first and i + 1 < len(tokens) and tokens[i + 1].word == second:
            return i
    return None


def _order_items(tokens: list[Token], sql: str) -> tuple[tuple[Span, str], ...]:
    items = []
    for part in split_commas(tokens):
        cut = len(part)
        while cut > 1 and part[cut - 1].word in ("asc", "desc", "nulls", "first", "last"):
            cut -= 1
        direction = " ".join(t.text.upper() for t in part[cut:])
        items.append((Span(tuple(part[:cut]), sql), direction))
    return tuple(items)


def references_columns(span: Span) -> bool:
    """Whether an expression reads a column (so it must be evaluated per row), e.g. not `0.5`."""
    tokens = span.tokens
    for i, token in enumerate(tokens):
        if token.kind == "qident":
            return True
        if token.kind == "ident" and token.word not in KEYWORDS:
            if i + 1 < len(tokens) and tokens[i + 1].text == "(":
                continue  # a function name
            return True
    return False

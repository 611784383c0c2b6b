"""A strict parser for the PowerShell that ewsready's fix commands are made of.

Test-only: there is no PowerShell on the machines that run these tests, so the tests
that prove the generated commands inert parse them with this instead. It follows the
lexical rules of the PowerShell language specification (chapter 2) and the
about_Parsing, about_Quoting_Rules and about_Special_Characters help topics:

- single-quoted strings end on any of ' and U+2018..U+201B, and two of them in a row
  stand for one; double-quoted strings end on " and U+201C..U+201E and expand `$name`,
  `${name}`, `$(...)` and backtick escapes; both have here-string forms (@' '@, @" "@);
- `#` comments run to the end of the line (CR or LF only), `<# #>` comments to `#>`;
- statements end at a newline or `;`; `|` pipes, `&&` and `||` chain pipelines;
- a pipeline's first element is an expression or a command; later ones are commands,
  whose arguments are read in argument mode (barewords, parameters, strings, variables,
  `(...)`, `$(...)`, `@(...)`, script blocks, splatting, comma lists);
- expressions with the operators the catalogue uses, casts such as `[char]10`, member
  access and method calls.

It is deliberately narrower than PowerShell: whatever it does not understand raises
ParseError (redirection, hash tables, most keywords, number suffixes, barewords with
characters other than letters, digits and `-_.:/\\`, arguments glued together such as
`'a'b`, quote pairs of two different kinds). A test over generated commands therefore
fails on anything unexpected instead of passing it.

`evaluate_quoted` computes the string a value written by ewsready.powershell.quote
stands for, with PowerShell's rules for `+` (a string on the left concatenates; a
[char] on the left adds numbers), in UTF-16 code units as .NET strings are.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

logger = logging.getLogger(__name__)

NEWLINES = "\r\n"
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
DOUBLE_QUOTES = '"\u201c\u201d\u201e'
DASHES = "-\u2013\u2014\u2015"
# Characters this parser accepts in a bareword (a generic token): what the catalogue's
# cmdlet names, enum values and paths need, and nothing that PowerShell would expand.
BAREWORD = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/\\"
)
IDENTIFIER_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
IDENTIFIER = IDENTIFIER_START | frozenset("0123456789")
TYPE_NAME = IDENTIFIER | frozenset(".")
KEYWORDS = frozenset(
    "begin break catch class configuration continue data define do dynamicparam else "
    "elseif end enum exit filter finally for foreach from function hidden if in "
    "inlinescript parallel param process return sequence static switch throw trap try "
    "until using var while workflow".split()
)
LOGICAL = frozenset({"and", "or", "xor"})
BITWISE = frozenset({"band", "bor", "bxor"})
_CASED = (
    "eq ne gt ge lt le like notlike match notmatch contains notcontains in notin "
    "replace split".split()
)
COMPARISON = frozenset(
    [*_CASED, *("i" + o for o in _CASED), *("c" + o for o in _CASED)]
    + ["is", "isnot", "as", "join"]
)
ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}


class ParseError(ValueError):
    """The text is not PowerShell this parser understands; says where and why."""

    def __init__(self, text: str, position: int, message: str) -> None:
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        excerpt = text[max(0, position - 30) : position + 30]
        super().__init__(f"line {line}, column {column}: {message} (near {excerpt!r})")
        self.position = position


class EvaluationError(ValueError):
    """An expression is not a quoted value, or PowerShell would not make a string."""


# --- the syntax tree ---------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    span: tuple[int, int] = field(compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Comment(Node):
    text: str


@dataclass(frozen=True)
class Script(Node):
    statements: tuple[Node, ...]
    comments: tuple[Comment, ...]


@dataclass(frozen=True)
class Pipeline(Node):
    elements: tuple[Node, ...]


@dataclass(frozen=True)
class Chain(Node):
    left: Node
    operator: str
    right: Node


@dataclass(frozen=True)
class Assignment(Node):
    target: Node
    value: Node


@dataclass(frozen=True)
class IfClause(Node):
    condition: Node
    body: tuple[Node, ...]


@dataclass(frozen=True)
class If(Node):
    clauses: tuple[IfClause, ...]
    otherwise: tuple[Node, ...] | None


@dataclass(frozen=True)
class Command(Node):
    invocation: str  # "" or "&"
    name: Node
    elements: tuple[Node, ...]


@dataclass(frozen=True)
class Parameter(Node):
    name: str
    argument: Node | None


@dataclass(frozen=True)
class Bareword(Node):
    text: str


@dataclass(frozen=True)
class StringLiteral(Node):
    """A verbatim (single-quoted) string; `here` for the @' '@ form."""

    value: str
    here: bool = False


@dataclass(frozen=True)
class ExpandableString(Node):
    """A double-quoted string: text and the variables and $(...) it expands."""

    parts: tuple[str | Node, ...]
    here: bool = False


@dataclass(frozen=True)
class Number(Node):
    value: int


@dataclass(frozen=True)
class Variable(Node):
    name: str


@dataclass(frozen=True)
class Splat(Node):
    name: str


@dataclass(frozen=True)
class Member(Node):
    target: Node
    name: str
    static: bool


@dataclass(frozen=True)
class Invoke(Node):
    target: Node
    name: str
    static: bool
    arguments: tuple[Node, ...]


@dataclass(frozen=True)
class Index(Node):
    target: Node
    index: Node


@dataclass(frozen=True)
class Paren(Node):
    statement: Node


@dataclass(frozen=True)
class SubExpression(Node):
    statements: tuple[Node, ...]


@dataclass(frozen=True)
class ArrayExpression(Node):
    statements: tuple[Node, ...]


@dataclass(frozen=True)
class ScriptBlock(Node):
    statements: tuple[Node, ...]


@dataclass(frozen=True)
class ArrayLiteral(Node):
    elements: tuple[Node, ...]


@dataclass(frozen=True)
class TypeLiteral(Node):
    name: str


@dataclass(frozen=True)
class Cast(Node):
    type: str
    operand: Node


@dataclass(frozen=True)
class Unary(Node):
    operator: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    operator: str
    left: Node
    right: Node


# --- characters ----------------------------------------------------------------------


def is_whitespace(char: str) -> bool:
    """Spec 2.2.4: Zs, Zl, Zp, tab, vertical tab, form feed (not CR or LF)."""
    return bool(char) and (
        char in "\t\v\f" or unicodedata.category(char) in ("Zs", "Zl", "Zp")
    )


def is_variable_char(char: str) -> bool:
    """Spec 2.3.6: letters, decimal digits, underscore and ?."""
    return bool(char) and (
        char in "_?"
        or unicodedata.category(char) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd")
    )


# --- the parser ----------------------------------------------------------------------


class Parser:
    """Recursive descent over the characters; the mode follows the grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.comments: dict[int, Comment] = {}

    # -- helpers --

    def error(self, message: str, position: int | None = None) -> ParseError:
        return ParseError(
            self.text, self.pos if position is None else position, message
        )

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def startswith(self, prefix: str) -> bool:
        return self.text.startswith(prefix, self.pos)

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"expected {char!r}, found {found}")
        self.pos += 1

    def at_newline(self) -> bool:
        return self.peek() in NEWLINES and self.peek() != ""

    def skip_newline(self) -> None:
        if self.startswith("\r\n"):
            self.pos += 2
        else:
            self.pos += 1

    def skip_blank(self, newlines: bool) -> None:
        """Whitespace, line continuations and comments; newlines too when asked."""
        while self.pos < len(self.text):
            char = self.peek()
            if is_whitespace(char):
                self.pos += 1
            elif char == "`" and self.peek(1) in NEWLINES and self.peek(1):
                self.pos += 1
                self.skip_newline()
            elif newlines and char in NEWLINES:
                self.skip_newline()
            elif char == "#":
                self.line_comment()
            elif self.startswith("<#"):
                self.block_comment()
            else:
                return

    def line_comment(self) -> None:
        start = self.pos
        end = start
        while end < len(self.text) and self.text[end] not in NEWLINES:
            end += 1
        text = self.text[start:end]
        if text[1:].lower().startswith("requires"):
            raise self.error("#requires is a directive, not a comment; not understood")
        self.comments[start] = Comment(text, span=(start, end))
        self.pos = end

    def block_comment(self) -> None:
        start = self.pos
        end = self.text.find("#>", start + 2)
        if end < 0:
            raise self.error("unterminated <# comment")
        end += 2
        self.comments[start] = Comment(self.text[start:end], span=(start, end))
        self.pos = end

    def word_here(self) -> str:
        """The run of letters at the position, lowercased, if it is a whole word."""
        end = self.pos
        while (
            end < len(self.text)
            and self.text[end].isascii()
            and (self.text[end].isalpha())
        ):
            end += 1
        if end < len(self.text) and self.text[end] in BAREWORD:
            return ""
        return self.text[self.pos : end].lower()

    # -- statements --

    def script(self) -> Script:
        statements = self.statements(closer="")
        if self.pos != len(self.text):
            raise self.error(f"unexpected {self.peek()!r}")
        comments = tuple(self.comments[k] for k in sorted(self.comments))
        return Script(statements, comments, span=(0, len(self.text)))

    def statements(self, closer: str) -> tuple[Node, ...]:
        """Statements up to `closer` (not consumed) or, for "", the end of the text."""
        items: list[Node] = []
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == ";":
                self.pos += 1
                continue
            if self.peek() == "":
                if closer:
                    raise self.error(f"missing {closer!r}")
                return tuple(items)
            if closer and self.peek() == closer:
                return tuple(items)
            if self.peek() in ")}]":
                raise self.error(f"unexpected {self.peek()!r}")
            items.append(self.statement())
            self.skip_blank(newlines=False)
            char = self.peek()
            if char == "" or char in NEWLINES or char == ";":
                continue
            if closer and char == closer:
                continue
            raise self.error(f"unexpected {char!r} after a statement")

    def statement(self) -> Node:
        word = self.word_here()
        if word == "if":
            return self.if_statement()
        if word in KEYWORDS:
            raise self.error(f"the keyword {word!r} is not understood")
        return self.chain()

    def if_statement(self) -> If:
        start = self.pos
        self.pos += 2
        clauses: list[IfClause] = []
        otherwise: tuple[Node, ...] | None = None
        while True:
            clause_start = self.pos
            self.skip_blank(newlines=False)
            self.expect("(")
            self.skip_blank(newlines=True)
            condition = self.chain()
            self.skip_blank(newlines=True)
            self.expect(")")
            self.skip_blank(newlines=True)
            body = self.block()
            clauses.append(IfClause(condition, body, span=(clause_start, self.pos)))
            after = self.pos
            self.skip_blank(newlines=True)
            word = self.word_here()
            if word == "elseif":
                self.pos += len(word)
                continue
            if word == "else":
                self.pos += len(word)
                self.skip_blank(newlines=True)
                otherwise = self.block()
            else:
                self.pos = after
            return If(tuple(clauses), otherwise, span=(start, self.pos))

    def block(self) -> tuple[Node, ...]:
        self.expect("{")
        statements = self.statements(closer="}")
        self.expect("}")
        return statements

    def chain(self) -> Node:
        start = self.pos
        left = self.pipeline()
        while True:
            after = self.pos
            self.skip_blank(newlines=False)
            if self.startswith("&&") or self.startswith("||"):
                operator = self.text[self.pos : self.pos + 2]
                self.pos += 2
                self.skip_blank(newlines=True)
                right = self.pipeline()
                left = Chain(left, operator, right, span=(start, self.pos))
            else:
                self.pos = after
                return left

    def pipeline(self) -> Node:
        start = self.pos
        first = self.pipeline_element(first=True)
        after = self.pos
        self.skip_blank(newlines=False)
        if self.peek() == "=" and self.peek(1) != "=":
            if not isinstance(first, Variable | Member):
                raise self.error("only a variable or its member can be assigned to")
            self.pos += 1
            self.skip_blank(newlines=True)
            value = self.statement()
            return Assignment(first, value, span=(start, self.pos))
        self.pos = after
        elements = [first]
        while True:
            after = self.pos
            self.skip_blank(newlines=False)
            if self.peek() == "|" and self.peek(1) != "|":
                self.pos += 1
                self.skip_blank(newlines=True)
                elements.append(self.pipeline_element(first=False))
            else:
                self.pos = after
                return Pipeline(tuple(elements), span=(start, self.pos))

    def starts_expression(self) -> bool:
        char = self.peek()
        return char != "" and (
            char in "$@([{!"
            or char in SINGLE_QUOTES
            or char in DOUBLE_QUOTES
            or char.isdigit()
        )

    def pipeline_element(self, first: bool) -> Node:
        self.skip_blank(newlines=False)
        start = self.pos
        char = self.peek()
        if char == "&" and self.peek(1) != "&":
            self.pos += 1
            self.skip_blank(newlines=False)
            name = self.argument_value()
            return self.command("&", name, start)
        if char == "." and is_whitespace(self.peek(1)):
            raise self.error("dot-sourcing is not understood")
        if char in DASHES and char:
            raise self.error("an operator or parameter at the start of a statement")
        if self.starts_expression():
            if not first:
                raise self.error("an expression after '|' (only commands can follow)")
            return self.expression()
        if self.word_here() in KEYWORDS:
            raise self.error(f"the keyword {self.word_here()!r} is not understood")
        name = self.bareword()
        return self.command("", name, start)

    def command(self, invocation: str, name: Node, start: int) -> Command:
        elements: list[Node] = []
        while True:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char == "" or char in NEWLINES or char in ";|)}":
                break
            if char == "&":
                if self.peek(1) == "&":
                    break
                raise self.error("'&' inside a command (background job) not understood")
            elements.append(self.command_element())
        return Command(invocation, name, tuple(elements), span=(start, self.pos))

    # -- argument mode --

    def command_element(self) -> Node:
        start = self.pos
        char = self.peek()
        if char in DASHES and self.peek(1) and self.peek(1) in DASHES:
            raise self.error("'--' and the stop-parsing token are not understood")
        if char in DASHES and self.peek(1) in IDENTIFIER_START:
            self.pos += 1
            name = self.identifier()
            if self.peek() == ":":
                self.pos += 1
                argument = self.argument_value()
                return Parameter(name, argument, span=(start, self.pos))
            self.expect_argument_end(comment_may_follow=False)
            return Parameter(name, None, span=(start, self.pos))
        value = self.argument_value()
        values = [value]
        while True:
            after = self.pos
            self.skip_blank(newlines=False)
            if self.peek() != ",":
                self.pos = after
                break
            self.pos += 1
            self.skip_blank(newlines=True)
            values.append(self.argument_value())
        if len(values) == 1:
            return value
        return ArrayLiteral(tuple(values), span=(start, self.pos))

    def argument_value(self) -> Node:
        """One argument in argument mode; it must end at a separator."""
        char = self.peek()
        if char == "":
            raise self.error("an argument was expected")
        if (
            char in SINGLE_QUOTES
            or char in DOUBLE_QUOTES
            or char in "$@({"
            or char.isdigit()
        ):
            node = self.primary(argument_mode=True)
            self.expect_argument_end(comment_may_follow=True)
            return node
        if char == "[":
            raise self.error("'[' starts a bareword in argument mode; not understood")
        node = self.bareword()
        self.expect_argument_end(comment_may_follow=False)
        return node

    def bareword(self) -> Bareword:
        start = self.pos
        while self.peek() and self.peek() in BAREWORD:
            self.pos += 1
        if self.pos == start:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"unexpected {found}")
        if self.text[start] in DASHES:
            raise self.error("a bareword may not start with a dash here")
        return Bareword(self.text[start : self.pos], span=(start, self.pos))

    def expect_argument_end(self, comment_may_follow: bool) -> None:
        """PowerShell glues adjacent argument parts into one; this parser refuses."""
        char = self.peek()
        if char == "" or char in NEWLINES or is_whitespace(char) or char in ";|)},":
            return
        if char == "&" and self.peek(1) == "&":
            return
        if char == "`" and self.peek(1) in NEWLINES and self.peek(1):
            return
        if comment_may_follow and (char == "#" or self.startswith("<#")):
            return
        raise self.error(f"argument continues with {char!r}; glued arguments")

    def identifier(self) -> str:
        start = self.pos
        if self.peek() not in IDENTIFIER_START or not self.peek():
            raise self.error("a name was expected")
        while self.peek() and self.peek() in IDENTIFIER:
            self.pos += 1
        return self.text[start : self.pos]

    # -- expression mode --

    def expression(self) -> Node:
        return self.binary_level(0)

    LEVELS: tuple[frozenset[str], ...] = (LOGICAL, BITWISE, COMPARISON)

    def binary_level(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.additive()
        start = self.pos
        left = self.binary_level(level + 1)
        while True:
            after = self.pos
            self.skip_blank(newlines=False)
            operator = self.dash_operator()
            if operator is None or operator not in self.LEVELS[level]:
                self.pos = after
                return left
            self.pos += 1 + len(operator)
            self.skip_blank(newlines=True)
            right = self.binary_level(level + 1)
            left = Binary(operator, left, right, span=(start, self.pos))

    def dash_operator(self) -> str | None:
        """The operator name after a dash at the position, lowercased, if any."""
        if not self.peek() or self.peek() not in DASHES:
            return None
        end = self.pos + 1
        while (
            end < len(self.text)
            and self.text[end].isascii()
            and (self.text[end].isalpha())
        ):
            end += 1
        word = self.text[self.pos + 1 : end].lower()
        if not word:
            return None
        known = LOGICAL | BITWISE | COMPARISON | {"not", "f", "bnot"}
        if word not in known:
            raise self.error(f"the operator -{word} is not understood")
        return word

    def additive(self) -> Node:
        start = self.pos
        left = self.array_literal()
        while True:
            after = self.pos
            self.skip_blank(newlines=False)
            char = self.peek()
            if char == "+" and self.peek(1) not in ("+", "="):
                operator = "+"
            elif (
                char in DASHES
                and char
                and self.peek(1) not in IDENTIFIER_START | set(DASHES) | {"="}
            ):
                operator = "-"
            else:
                self.pos = after
                return left
            self.pos += 1
            self.skip_blank(newlines=True)
            right = self.array_literal()
            left = Binary(operator, left, right, span=(start, self.pos))

    def array_literal(self) -> Node:
        start = self.pos
        first = self.unary()
        elements = [first]
        while True:
            after = self.pos
            self.skip_blank(newlines=False)
            if self.peek() != ",":
                self.pos = after
                break
            self.pos += 1
            self.skip_blank(newlines=True)
            elements.append(self.unary())
        if len(elements) == 1:
            return first
        return ArrayLiteral(tuple(elements), span=(start, self.pos))

    def unary(self) -> Node:
        start = self.pos
        char = self.peek()
        if char == "!":
            self.pos += 1
            self.skip_blank(newlines=False)
            return Unary("!", self.unary(), span=(start, self.pos))
        if char in DASHES and char:
            operator = self.dash_operator()
            if operator in ("not", "bnot"):
                self.pos += 1 + len(operator)
                self.skip_blank(newlines=True)
                return Unary("-" + operator, self.unary(), span=(start, self.pos))
            raise self.error("a unary minus or an operator here is not understood")
        if char == "[":
            literal = self.type_literal()
            if self.startswith("::"):
                return self.postfix(literal, argument_mode=False)
            after = self.pos
            self.skip_blank(newlines=False)
            if self.starts_expression() or (self.peek() in DASHES and self.peek()):
                operand = self.unary()
                return Cast(literal.name, operand, span=(start, self.pos))
            self.pos = after
            return literal
        if char == ",":
            raise self.error("the unary comma operator is not understood")
        return self.primary(argument_mode=False)

    def type_literal(self) -> TypeLiteral:
        start = self.pos
        self.expect("[")
        name_start = self.pos
        while self.peek() and self.peek() in TYPE_NAME:
            self.pos += 1
        name = self.text[name_start : self.pos]
        if not name:
            raise self.error("a type name was expected")
        self.expect("]")
        return TypeLiteral(name, span=(start, self.pos))

    def primary(self, argument_mode: bool) -> Node:
        start = self.pos
        char = self.peek()
        node: Node
        if char == "":
            raise self.error("an expression was expected")
        if char in SINGLE_QUOTES:
            node = self.verbatim_string()
        elif char in DOUBLE_QUOTES:
            node = self.expandable_string()
        elif char == "@":
            after = self.peek(1)
            if after and after in SINGLE_QUOTES:
                node = self.verbatim_here_string()
            elif after and after in DOUBLE_QUOTES:
                node = self.expandable_here_string()
            elif after == "(":
                self.pos += 2
                statements = self.statements(closer=")")
                self.expect(")")
                node = ArrayExpression(statements, span=(start, self.pos))
            elif after == "{":
                raise self.error("hash table literals are not understood")
            elif is_variable_char(after) and argument_mode:
                self.pos += 1
                name = self.variable_name()
                return Splat(name, span=(start, self.pos))
            else:
                raise self.error("'@' here is not understood")
        elif char == "$":
            if self.peek(1) == "(":
                self.pos += 2
                statements = self.statements(closer=")")
                self.expect(")")
                node = SubExpression(statements, span=(start, self.pos))
            else:
                node = self.variable()
        elif char == "(":
            self.pos += 1
            self.skip_blank(newlines=True)
            statement = self.statement()
            self.skip_blank(newlines=True)
            self.expect(")")
            node = Paren(statement, span=(start, self.pos))
        elif char == "{":
            self.pos += 1
            statements = self.statements(closer="}")
            self.expect("}")
            return ScriptBlock(statements, span=(start, self.pos))
        elif char.isdigit():
            return self.number()
        else:
            raise self.error(f"unexpected {char!r} in an expression")
        return self.postfix(node, argument_mode)

    def number(self) -> Number:
        start = self.pos
        while self.peek().isdigit() and self.peek().isascii():
            self.pos += 1
        after = self.peek()
        if after and (
            after in IDENTIFIER
            or after == "."
            or (not after.isascii() and not is_whitespace(after))
        ):
            raise self.error("only plain decimal integers are understood")
        return Number(int(self.text[start : self.pos]), span=(start, self.pos))

    def postfix(self, node: Node, argument_mode: bool) -> Node:
        """Member access, method calls and (in expressions) indexing, glued on."""
        start = node.span[0]
        while True:
            if self.startswith("::") or (
                self.peek() == "." and self.peek(1) in IDENTIFIER_START and self.peek(1)
            ):
                static = self.startswith("::")
                self.pos += 2 if static else 1
                name = self.identifier()
                if self.peek() == "(":
                    arguments = self.call_arguments()
                    node = Invoke(node, name, static, arguments, span=(start, self.pos))
                else:
                    node = Member(node, name, static, span=(start, self.pos))
            elif self.peek() == "[" and not argument_mode:
                self.pos += 1
                self.skip_blank(newlines=True)
                index = self.expression()
                self.skip_blank(newlines=True)
                self.expect("]")
                node = Index(node, index, span=(start, self.pos))
            else:
                return node

    def call_arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        self.skip_blank(newlines=True)
        if self.peek() == ")":
            self.pos += 1
            return ()
        # A comma would separate arguments here, but binds tighter than + in an
        # expression; calls with one argument are all the catalogue needs.
        argument = self.expression()
        if isinstance(argument, ArrayLiteral):
            raise self.error("method calls with several arguments are not understood")
        self.skip_blank(newlines=True)
        self.expect(")")
        return (argument,)

    # -- variables --

    def variable(self) -> Variable:
        start = self.pos
        self.expect("$")
        if self.peek() == "{":
            self.pos += 1
            name: list[str] = []
            while True:
                char = self.peek()
                if char == "":
                    raise self.error("unterminated ${")
                if char == "}":
                    self.pos += 1
                    break
                if char == "`":
                    if not self.peek(1):
                        raise self.error("unterminated ${")
                    name.append(self.peek(1))
                    self.pos += 2
                    continue
                name.append(char)
                self.pos += 1
            if not name:
                raise self.error("an empty ${} variable")
            return Variable("".join(name), span=(start, self.pos))
        if self.peek() in ("$", "^") and self.peek():
            raise self.error(f"the variable ${self.peek()} is not understood")
        if not is_variable_char(self.peek()):
            raise self.error("'$' without a variable name")
        return Variable(self.variable_name(), span=(start, self.pos))

    def variable_name(self) -> str:
        start = self.pos
        while is_variable_char(self.peek()):
            self.pos += 1
        if self.peek() == ":" and is_variable_char(self.peek(1)):
            self.pos += 1
            while is_variable_char(self.peek()):
                self.pos += 1
        return self.text[start : self.pos]

    # -- strings --

    def verbatim_string(self) -> StringLiteral:
        start = self.pos
        self.pos += 1
        value: list[str] = []
        while True:
            char = self.peek()
            if char == "":
                raise self.error("unterminated single-quoted string", start)
            if char in SINGLE_QUOTES:
                following = self.peek(1)
                if following and following in SINGLE_QUOTES:
                    if following != char:
                        raise self.error(
                            "two different single quotes in a row: the spec does not "
                            "say which one the pair stands for"
                        )
                    value.append(char)
                    self.pos += 2
                    continue
                self.pos += 1
                return StringLiteral("".join(value), span=(start, self.pos))
            value.append(char)
            self.pos += 1

    def here_string_body(self, quotes: str) -> tuple[int, int]:
        """After @ and a quote: blanks, a newline, then the body up to newline+quote+@.

        Returns the body's span; the position ends after the closing quote and @.
        """
        start = self.pos
        self.pos += 2
        while is_whitespace(self.peek()):
            self.pos += 1
        if not self.at_newline():
            raise self.error("a here-string must start a new line after its opening")
        self.skip_newline()
        body_start = self.pos
        if self.peek() in quotes and self.peek() and self.peek(1) == "@":
            self.pos += 2
            return body_start, body_start
        index = body_start
        while True:
            index = min(
                (i for i in (self.text.find(n, index) for n in NEWLINES) if i >= 0),
                default=-1,
            )
            if index < 0:
                raise self.error("unterminated here-string", start)
            after = index + (2 if self.text.startswith("\r\n", index) else 1)
            if (
                after + 1 < len(self.text)
                and self.text[after] in quotes
                and self.text[after + 1] == "@"
            ):
                self.pos = after + 2
                return body_start, index
            index = after

    def verbatim_here_string(self) -> StringLiteral:
        start = self.pos
        body_start, body_end = self.here_string_body(SINGLE_QUOTES)
        return StringLiteral(
            self.text[body_start:body_end], here=True, span=(start, self.pos)
        )

    def expandable_here_string(self) -> ExpandableString:
        start = self.pos
        body_start, body_end = self.here_string_body(DOUBLE_QUOTES)
        end = self.pos
        inner = Parser(self.text[:body_end])
        inner.pos = body_start
        parts = inner.expandable_parts(here=True)
        self.comments.update(inner.comments)
        return ExpandableString(parts, here=True, span=(start, end))

    def expandable_string(self) -> ExpandableString:
        start = self.pos
        self.pos += 1
        parts = self.expandable_parts(here=False)
        return ExpandableString(parts, span=(start, self.pos))

    def expandable_parts(self, here: bool) -> tuple[str | Node, ...]:
        """The parts of a double-quoted string; for a here-string, up to the end."""
        parts: list[str | Node] = []
        text: list[str] = []

        def flush() -> None:
            if text:
                parts.append("".join(text))
                text.clear()

        while True:
            char = self.peek()
            if char == "":
                if here:
                    flush()
                    return tuple(parts)
                raise self.error("unterminated double-quoted string")
            if char in DOUBLE_QUOTES and not here:
                following = self.peek(1)
                if following and following in DOUBLE_QUOTES:
                    if following != char:
                        raise self.error("two different double quotes in a row")
                    text.append(char)
                    self.pos += 2
                    continue
                self.pos += 1
                flush()
                return tuple(parts)
            if char == "`":
                following = self.peek(1)
                if following == "":
                    raise self.error("a backtick at the end of a string")
                if following == "u":
                    raise self.error("`u{...} escapes are not understood")
                text.append(ESCAPES.get(following, following))
                self.pos += 2
                continue
            if char == "$":
                following = self.peek(1)
                if following == "(":
                    flush()
                    start = self.pos
                    self.pos += 2
                    statements = self.statements(closer=")")
                    self.expect(")")
                    parts.append(SubExpression(statements, span=(start, self.pos)))
                    continue
                if following == "{" or is_variable_char(following):
                    flush()
                    parts.append(self.variable())
                    continue
                if following in ("$", "^"):
                    raise self.error(f"${following} in a string is not understood")
            text.append(char)
            self.pos += 1


def parse(text: str) -> Script:
    """Parse a script; raise ParseError on anything this parser does not understand."""
    return Parser(text).script()


def parse_expression(text: str) -> Node:
    """Parse text that must be exactly one expression (as in `$x = <text>`)."""
    script = parse(text)
    if script.comments or len(script.statements) != 1:
        raise ParseError(text, 0, "not exactly one expression")
    statement = script.statements[0]
    if not isinstance(statement, Pipeline) or len(statement.elements) != 1:
        raise ParseError(text, 0, "not exactly one expression")
    element = statement.elements[0]
    if isinstance(element, Command):
        raise ParseError(text, 0, "a command, not an expression")
    return element


# --- walking the tree --------------------------------------------------------------


def children(node: Node) -> Iterator[Node]:
    for item in fields(node):
        if item.name == "span":
            continue
        value = getattr(node, item.name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, tuple):
            for element in value:
                if isinstance(element, Node):
                    yield element


def walk(node: Node) -> Iterator[Node]:
    """Every node below and including `node`, in source order.

    Iterative: a long quoted value is a deep chain of + that would exhaust Python's
    recursion limit.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(children(current))))


def command_names(node: Node) -> list[str]:
    """The names of all commands, nested ones included, in source order.

    A command called through & with anything but a bareword shows as "&<Type>", so it
    can never equal a cmdlet name.
    """
    names = []
    for item in walk(node):
        if isinstance(item, Command):
            if isinstance(item.name, Bareword):
                names.append(item.invocation + item.name.text)
            else:
                names.append("&<" + type(item.name).__name__ + ">")
    return names


# --- what quote() writes -----------------------------------------------------------


def utf16(text: str) -> tuple[int, ...]:
    data = text.encode("utf-16-le", "surrogatepass")
    return tuple(
        int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)
    )


@dataclass
class _Value:
    """A value during evaluation: a string (UTF-16 units), a [char] or an integer."""

    kind: str  # "string", "char" or "int"
    units: list[int] = field(default_factory=list)
    number: int = 0


def _concatenation_leaves(node: Node) -> list[Node]:
    """The operands of a left-nested chain of +, in order (a right operand that is
    itself a + chain is returned as one operand, and refused by _leaf)."""
    rights: list[Node] = []
    while isinstance(node, Binary) and node.operator == "+":
        rights.append(node.right)
        node = node.left
    return [node, *reversed(rights)]


def _leaf(node: Node) -> _Value:
    if isinstance(node, StringLiteral) and not node.here:
        return _Value("string", list(utf16(node.value)))
    if (
        isinstance(node, Cast)
        and node.type.lower() in ("char", "system.char")
        and isinstance(node.operand, Number)
    ):
        if not 0 <= node.operand.value <= 0xFFFF:
            raise EvaluationError(f"[char]{node.operand.value} is out of range")
        return _Value("char", number=node.operand.value)
    raise EvaluationError(f"{type(node).__name__} is not part of a quoted value")


def _add(left: _Value, right: _Value) -> _Value:
    """PowerShell's + (spec 7.7): a string on the left concatenates, else arithmetic.

    Extends the left string in place, so a long chain stays linear.
    """
    if left.kind == "string":
        if right.kind == "string":
            left.units.extend(right.units)
        elif right.kind == "char":
            left.units.append(right.number)
        else:
            left.units.extend(utf16(str(right.number)))
        return left
    if right.kind == "string":
        # A char or number on the left converts the string to a number, or fails.
        raise EvaluationError("a number plus a string: PowerShell adds or fails")
    return _Value("int", number=left.number + right.number)


def _quoted(node: Node) -> _Value:
    if isinstance(node, StringLiteral) and not node.here:
        return _leaf(node)
    if not (
        isinstance(node, Paren)
        and isinstance(node.statement, Pipeline)
        and len(node.statement.elements) == 1
    ):
        raise EvaluationError(f"{type(node).__name__} is not a quoted value")
    inner = node.statement.elements[0]
    if not (isinstance(inner, Binary) and inner.operator == "+"):
        raise EvaluationError("a parenthesised quoted value must be a concatenation")
    leaves = _concatenation_leaves(inner)
    value = _leaf(leaves[0])
    for leaf in leaves[1:]:
        value = _add(value, _leaf(leaf))
    return value


def evaluate_quoted(node: Node) -> tuple[int, ...]:
    """The UTF-16 units of the string a quote() expression stands for.

    Raises EvaluationError for anything but a single-quoted literal or a parenthesised
    `+` chain of such literals and [char]N, and when PowerShell would not produce a
    string (a [char] on the left of + adds code points instead of concatenating).
    """
    value = _quoted(node)
    if value.kind != "string":
        raise EvaluationError(f"evaluates to a {value.kind}, not a string")
    return tuple(value.units)


def evaluate_quoted_list(node: Node) -> list[tuple[int, ...]]:
    """The strings of a quote_list() array, @(...) of quoted values."""
    if not isinstance(node, ArrayExpression):
        raise EvaluationError(f"{type(node).__name__} is not @(...)")
    if not node.statements:
        return []
    if len(node.statements) != 1:
        raise EvaluationError("@(...) with more than one statement")
    statement = node.statements[0]
    if not isinstance(statement, Pipeline) or len(statement.elements) != 1:
        raise EvaluationError("@(...) holding more than one expression")
    element = statement.elements[0]
    if isinstance(element, ArrayLiteral):
        return [evaluate_quoted(e) for e in element.elements]
    return [evaluate_quoted(element)]


# --- comparing a generated script with its template ---------------------------------


class TemplateMismatch(AssertionError):
    """The generated script's structure differs from its template's."""


@dataclass(frozen=True)
class SlotMatch:
    """Where a template's value slot landed in the generated script."""

    name: str
    node: Node
    ancestors: tuple[str, ...]  # type names from the root down, e.g. ("Script", ...)
    in_command_name: bool


def match_template(
    template: Node, generated: Node, slot_name: Callable[[Node], str | None]
) -> list[SlotMatch]:
    """Check that `generated` has exactly the structure of `template`, except at the
    template's slots (nodes for which slot_name gives a name), which may hold any node.

    Positions and comments are not compared. Returns the slots in source order.
    """
    slots: list[SlotMatch] = []

    def visit(
        expected: Node, actual: Node, ancestors: tuple[str, ...], in_name: bool
    ) -> None:
        name = slot_name(expected)
        if name is not None:
            slots.append(SlotMatch(name, actual, ancestors, in_name))
            return
        if type(expected) is not type(actual):
            raise TemplateMismatch(
                f"{' > '.join(ancestors)}: expected {type(expected).__name__}, found "
                f"{type(actual).__name__} at {actual.span}"
            )
        here = (*ancestors, type(expected).__name__)
        for item in fields(expected):
            if item.name in ("span", "comments"):
                continue
            want, got = getattr(expected, item.name), getattr(actual, item.name)
            inner_name = in_name or (
                isinstance(expected, Command) and item.name == "name"
            )
            if isinstance(want, Node) and isinstance(got, Node):
                visit(want, got, here, inner_name)
            elif isinstance(want, tuple) and isinstance(got, tuple):
                if len(want) != len(got):
                    raise TemplateMismatch(
                        f"{' > '.join(here)}.{item.name}: {len(want)} item(s) expected, "
                        f"{len(got)} found at {actual.span}"
                    )
                for w, g in zip(want, got, strict=True):
                    if isinstance(w, Node) and isinstance(g, Node):
                        visit(w, g, here, inner_name)
                    elif w != g:
                        raise TemplateMismatch(
                            f"{' > '.join(here)}.{item.name}: {w!r} != {g!r}"
                        )
            elif want != got:
                raise TemplateMismatch(
                    f"{' > '.join(here)}.{item.name}: {want!r} != {got!r} at "
                    f"{actual.span}"
                )

    visit(template, generated, (), False)
    return slots

"""The test-only PowerShell parser: the lexical rules it follows and what it refuses."""

from __future__ import annotations

import pytest

from tests.pwsh_parser import (
    ArrayExpression,
    ArrayLiteral,
    Assignment,
    Bareword,
    Cast,
    Chain,
    Command,
    EvaluationError,
    ExpandableString,
    If,
    Member,
    Parameter,
    Paren,
    ParseError,
    Pipeline,
    ScriptBlock,
    Splat,
    StringLiteral,
    SubExpression,
    TemplateMismatch,
    Variable,
    command_names,
    evaluate_quoted,
    evaluate_quoted_list,
    match_template,
    parse,
    parse_expression,
    utf16,
    walk,
)


def only_command(text: str) -> Command:
    script = parse(text)
    assert len(script.statements) == 1, script
    pipeline = script.statements[0]
    assert isinstance(pipeline, Pipeline) and len(pipeline.elements) == 1
    command = pipeline.elements[0]
    assert isinstance(command, Command)
    return command


def argument(text: str):
    """The one argument of `Write-Output <text>`."""
    command = only_command("Write-Output " + text)
    assert len(command.elements) == 1, command.elements
    return command.elements[0]


# --- single-quoted strings ------------------------------------------------------------


@pytest.mark.parametrize(
    "source, value",
    [
        ("''", ""),
        ("'a''b'", "a'b"),
        ("'$(Stop-Computer) `n \"x\"'", '$(Stop-Computer) `n "x"'),
        # Each of U+2018..U+201B opens and closes a string and doubles like '.
        ("\u2018a\u2019", "a"),
        ("'a\u2019\u2019b'", "a\u2019b"),
        ("'a\u2018\u2018b\u201a\u201ac\u201b\u201bd'", "a\u2018b\u201ac\u201bd"),
        ("\u201ba'", "a"),
        # Double quotes, typographic ones too, mean nothing inside.
        ("'\u201c\u201d\u201e'", "\u201c\u201d\u201e"),
        # A single-quoted string may span lines.
        ("'a\nb'", "a\nb"),
    ],
)
def test_single_quoted_strings(source, value):
    node = argument(source)
    assert isinstance(node, StringLiteral) and not node.here
    assert node.value == value


def test_a_typographic_quote_ends_the_string_early():
    # 'a’b' is the string 'a’ followed by b' glued on: refused, never a longer string.
    with pytest.raises(ParseError, match="glued"):
        parse("Write-Output 'a\u2019b'")
    with pytest.raises(ParseError):
        parse_expression("'a\u2019b'")


def test_two_different_quotes_in_a_row_are_refused():
    with pytest.raises(ParseError, match="two different single quotes"):
        parse("Write-Output 'a'\u2019b'")


def test_unterminated_strings_are_refused():
    for source in ("'abc", '"abc', "'a''", "@'\nabc\n", '@"\nabc'):
        with pytest.raises(ParseError, match="unterminated"):
            parse("Write-Output " + source)


# --- double-quoted strings ------------------------------------------------------------


def test_double_quoted_strings_expand_variables_and_subexpressions():
    node = argument('"a $x ${y z} $(Stop-Computer) `$n ""q"" `t $ end"')
    assert isinstance(node, ExpandableString)
    kinds = [type(p).__name__ if not isinstance(p, str) else p for p in node.parts]
    assert kinds == [
        "a ",
        "Variable",
        " ",
        "Variable",
        " ",
        "SubExpression",
        ' $n "q" \t $ end',
    ]
    assert command_names(node) == ["Stop-Computer"]


def test_typographic_double_quotes_delimit_expandable_strings():
    node = argument("\u201c$(Stop-Computer)\u201d")
    assert isinstance(node, ExpandableString)
    assert command_names(node) == ["Stop-Computer"]


def test_here_strings():
    verbatim = argument("@'\nit''s $(x)\n'@")
    assert verbatim == StringLiteral("it''s $(x)", here=True, span=(0, 0))
    expandable = argument('@"\n$(Stop-Computer)\nline\n"@')
    assert isinstance(expandable, ExpandableString) and expandable.here
    assert command_names(expandable) == ["Stop-Computer"]
    assert argument("@'\n'@") == StringLiteral("", here=True, span=(0, 0))
    with pytest.raises(ParseError, match="must start a new line"):
        parse("Write-Output @'x\n'@")
    with pytest.raises(ParseError, match="unterminated"):
        parse("Write-Output @'\nx '@")  # the closing '@ must start its line


# --- comments, separators, whitespace -------------------------------------------------


def test_comments():
    script = parse("Get-A # one\n<# two\nlines #> Get-B <# three #> -X 1\n#four")
    assert command_names(script) == ["Get-A", "Get-B"]
    assert [c.text for c in script.comments] == [
        "# one",
        "<# two\nlines #>",
        "<# three #>",
        "#four",
    ]
    # A comment ends at CR or LF only.
    assert command_names(parse("# a\rGet-A")) == ["Get-A"]
    # <# and #> mean nothing in a line comment.
    assert command_names(parse("# <# \nGet-A #> x")) == ["Get-A"]


@pytest.mark.parametrize(
    "source, message",
    [
        ("Get-A <# open", "unterminated <#"),
        ("#Requires -Version 7\nGet-A", "#requires"),
        ("Get-A b#c", "glued"),  # '#' inside a word is part of it: refused
    ],
)
def test_comment_edge_cases_are_refused(source, message):
    with pytest.raises(ParseError, match=message):
        parse(source)


def test_statement_separators_and_pipelines():
    script = parse("Get-A; Get-B\nGet-C | Get-D | Get-E && Get-F || Get-G")
    assert command_names(script) == [f"Get-{c}" for c in "ABCDEFG"]
    assert len(script.statements) == 3
    chain = script.statements[2]
    assert isinstance(chain, Chain) and chain.operator == "||"
    assert isinstance(chain.left, Chain) and chain.left.operator == "&&"
    assert len(chain.left.left.elements) == 3


def test_line_continuation_and_unicode_whitespace():
    command = only_command("Get-A `\n  -X 1")
    assert command.elements == (Parameter("X", None, span=(0, 0)), argument("1"))
    # U+2028, U+2029 and no-break space are whitespace, not line ends (spec 2.2.4).
    for space in ("\u2028", "\u2029", "\u00a0"):
        command = only_command(f"Get-A{space}Stop-Computer")
        assert command.elements == (Bareword("Stop-Computer", span=(0, 0)),)
    # NEL (U+0085) is neither; the parser refuses it outside strings.
    with pytest.raises(ParseError):
        parse("Get-A\u0085Stop-Computer")


def test_dashes_introduce_parameters_and_operators():
    for dash in "-\u2013\u2014\u2015":
        command = only_command(f"Get-A {dash}Identity 'x' {dash}Confirm:$false")
        assert [e.name for e in command.elements if isinstance(e, Parameter)] == [
            "Identity",
            "Confirm",
        ]
        assert parse_expression(f"$a {dash}eq 'x'").operator == "eq"


# --- commands and their arguments -----------------------------------------------------


def test_command_arguments():
    command = only_command(
        "Get-A -P (Get-B -Q $_).Name Cert:\\X\\Y /flag 2048 $true "
        "A, B, 'c' { Get-C } @splat @('x') $env:Path ${a b}"
    )
    kinds = [type(e).__name__ for e in command.elements]
    assert kinds == [
        "Parameter",
        "Member",
        "Bareword",
        "Bareword",
        "Number",
        "Variable",
        "ArrayLiteral",
        "ScriptBlock",
        "Splat",
        "ArrayExpression",
        "Variable",
        "Variable",
    ]
    assert command_names(command) == ["Get-A", "Get-B", "Get-C"]
    assert command.elements[-2] == Variable("env:Path", span=(0, 0))
    assert command.elements[-3] == ArrayExpression(
        (Pipeline((StringLiteral("x", span=(0, 0)),), span=(0, 0)),), span=(0, 0)
    )
    assert isinstance(command.elements[-4], Splat)


def test_call_operator_and_subexpressions_show_their_commands():
    assert command_names(parse("& Stop-Computer")) == ["&Stop-Computer"]
    assert command_names(parse("& 'C:\\x.exe' -a")) == ["&<StringLiteral>"]
    assert command_names(parse("& { Stop-Computer }")) == [
        "&<ScriptBlock>",
        "Stop-Computer",
    ]
    assert command_names(parse("Write-Output $(Stop-Computer)")) == [
        "Write-Output",
        "Stop-Computer",
    ]
    nodes = list(walk(parse("Write-Output @(Get-A) (Get-B) { Get-C } $(Get-D)")))
    for kind in (ArrayExpression, Paren, ScriptBlock, SubExpression):
        assert any(isinstance(n, kind) for n in nodes), kind


def test_statements_with_assignment_if_and_expressions():
    script = parse(
        "$x = Get-A -B 'c'\n"
        "$y = $_ + ':\\' + $x.Name\n"
        "if (Get-B) {\n  Set-B\n} elseif ($x -eq 'a') { Set-C } else {\n  Add-B\n}\n"
        "@('a', 'b') | ForEach-Object { $_ -like '*x*' -and !$y }\n"
        "[System.IO.File]::ReadAllBytes('C:\\x')"
    )
    first, second, third, fourth, fifth = script.statements
    assert isinstance(first, Assignment) and first.target == Variable("x", span=(0, 0))
    assert isinstance(second, Assignment)
    assert second.value.elements[0].operator == "+"
    assert isinstance(third, If) and len(third.clauses) == 2 and third.otherwise
    assert isinstance(fourth.elements[0], ArrayExpression)
    assert command_names(script) == [
        "Get-A",
        "Get-B",
        "Set-B",
        "Set-C",
        "Add-B",
        "ForEach-Object",
    ]
    assert fifth.elements[0].name == "ReadAllBytes"


@pytest.mark.parametrize(
    "source, message",
    [
        ("Get-A > out.txt", "unexpected '>'"),
        ("Get-A 2>&1", "only plain decimal integers|glued"),
        ("Get-A @{a=1}", "hash table"),
        ("foreach ($a in $b) { Get-A }", "keyword 'foreach'"),
        ("Get-A | function", "keyword 'function'"),
        ("Write-Output 'a'b", "glued"),
        ("Write-Output a'b'", "glued"),
        ("Write-Output $x'b'", "glued"),
        ("Write-Output (1)x", "glued"),
        ("Get-A --% x", "stop-parsing"),
        ("$x += 1", "unexpected"),
        ("Write-Output [char]10", "bareword in argument mode"),
        ("Get-A &", "background"),
        ("Get-A -Identity *", "unexpected"),
        ("Get-A 1kb", "decimal integers"),
        ("$a -foo 1", "-foo"),
        ("Get-A | 'b'", "after '|'"),
        ("Get-A $", "without a variable name"),
        (". .\\x.ps1", "dot-sourcing"),
        ("Get-A )", "unexpected"),
        ("Get-A }", "unexpected"),
        ("$(Get-A", "missing"),
        ("'a' = 1", "assigned"),
        ("[x]::M('a', 'b')", "several arguments"),
        ('"`u{1F600}"', "not understood"),
        ("Get-A é", "unexpected"),
    ],
)
def test_what_it_does_not_understand_is_an_error(source, message):
    with pytest.raises(ParseError, match=message):
        parse(source)


# --- evaluating what quote() writes ---------------------------------------------------


@pytest.mark.parametrize(
    "source, value",
    [
        ("''", ""),
        ("'a''b'", "a'b"),
        ("('a' + [char]10 + 'b')", "a\nb"),
        ("('' + [char]10)", "\n"),
        ("('' + [char]55357 + [char]56832)", "\U0001f600"),
        ("('x' + [Char]0 + [char]13 + [char]10)", "x\0\r\n"),
    ],
)
def test_evaluate_quoted(source, value):
    assert evaluate_quoted(parse_expression(source)) == utf16(value)


@pytest.mark.parametrize(
    "source, message",
    [
        ("([char]10 + [char]10)", "not a string"),  # adds code points: 20
        ("([char]10 + 'b')", "number plus a string"),
        ("[char]10", "not a quoted value"),
        ('"a"', "not a quoted value"),
        ("$x", "not a quoted value"),
        ("('a' + $x)", "not part of a quoted value"),
        ("('a' + ('b' + 'c'))", "not part of a quoted value"),
        ("('a')", "must be a concatenation"),
        ("('a' + [char]65536)", "out of range"),
        ("@'\nx\n'@", "not a quoted value"),
    ],
)
def test_evaluate_quoted_refuses_anything_else(source, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate_quoted(parse_expression(source))


def test_evaluate_quoted_list():
    assert evaluate_quoted_list(parse_expression("@()")) == []
    assert evaluate_quoted_list(parse_expression("@('a')")) == [utf16("a")]
    assert evaluate_quoted_list(parse_expression("@('a', ('' + [char]10))")) == [
        utf16("a"),
        utf16("\n"),
    ]
    for source in ("@('a'; 'b')", "@('a' | Get-A)", "@($x)", "'a', 'b'"):
        with pytest.raises(EvaluationError):
            evaluate_quoted_list(parse_expression(source))


# --- comparing with a template --------------------------------------------------------


def slot(node):
    if isinstance(node, StringLiteral) and node.value.startswith("SLOT-"):
        return node.value[5:]
    return None


def test_match_template_finds_the_slots():
    template = parse("Set-A -Identity 'SLOT-who' | ForEach-Object { Get-B 'SLOT-x' }")
    generated = parse("Set-A -Identity ('' + [char]10) | ForEach-Object { Get-B 'y' }")
    slots = match_template(template, generated, slot)
    assert [s.name for s in slots] == ["who", "x"]
    assert isinstance(slots[0].node, Paren)
    assert "ScriptBlock" in slots[1].ancestors
    assert not any(s.in_command_name for s in slots)


@pytest.mark.parametrize(
    "generated",
    [
        "Set-A -Identity 'x'; Stop-Computer",
        "Set-A -Identity 'x' -Confirm:$false",
        "Set-A -Identity 'x' | Stop-Computer",
        "Set-B -Identity 'x'",
        "Set-A -Identity 'x'\nStop-Computer",
    ],
)
def test_match_template_refuses_any_other_structure(generated):
    template = parse("Set-A -Identity 'SLOT-who'")
    with pytest.raises(TemplateMismatch):
        match_template(template, parse(generated), slot)


def test_slots_in_command_position_are_reported():
    slots = match_template(parse("& 'SLOT-x' -A"), parse("& 'Stop-Computer' -A"), slot)
    assert slots[0].in_command_name


def test_cast_and_member_nodes():
    assert isinstance(parse_expression("[char]10"), Cast)
    assert isinstance(parse_expression("$_.ExternalUrl.Host"), Member)
    assert isinstance(parse_expression("'a', 'b'"), ArrayLiteral)

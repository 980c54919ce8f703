//! A lexer with the states and error messages of Prometheus 3.5's PromQL lexer, so the positions
//! and wording of lexing errors match Prometheus'. Produces every token up front; the token
//! stream ends with `Eof`, or with `Error` where Prometheus' lexer stops.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Eof,
    Error,
    Comment,
    Identifier,
    MetricIdentifier,
    Number,
    Duration,
    String,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    /// `=` (label matching and label sets).
    Eql,
    Colon,
    // Operators.
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eqlc,
    Neq,
    Lte,
    Lss,
    Gte,
    Gtr,
    EqlRegex,
    NeqRegex,
    Land,
    Lor,
    Lunless,
    Atan2,
    At,
    // Aggregators.
    Avg,
    Bottomk,
    Count,
    CountValues,
    Group,
    Max,
    Min,
    Quantile,
    Stddev,
    Stdvar,
    Sum,
    Topk,
    Limitk,
    LimitRatio,
    // Keywords.
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Ignoring,
    Offset,
    On,
    Without,
    // Preprocessors of `@`.
    Start,
    End,
}

impl Kind {
    pub(crate) fn is_operator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Add | Sub
                | Mul
                | Div
                | Mod
                | Pow
                | Eqlc
                | Neq
                | Lte
                | Lss
                | Gte
                | Gtr
                | EqlRegex
                | NeqRegex
                | Land
                | Lor
                | Lunless
                | Atan2
                | At
        )
    }

    pub(crate) fn is_aggregator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Avg | Bottomk
                | Count
                | CountValues
                | Group
                | Max
                | Min
                | Quantile
                | Stddev
                | Stdvar
                | Sum
                | Topk
                | Limitk
                | LimitRatio
        )
    }

    pub(crate) fn is_keyword(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Bool | By | GroupLeft | GroupRight | Ignoring | Offset | On | Without
        )
    }

    /// The name Prometheus gives the token type (`ItemTypeStr`), if it has one.
    pub(crate) fn type_str(self) -> Option<&'static str> {
        use Kind::*;
        Some(match self {
            LeftParen => "(",
            RightParen => ")",
            LeftBrace => "{",
            RightBrace => "}",
            LeftBracket => "[",
            RightBracket => "]",
            Comma => ",",
            Eql => "=",
            Colon => ":",
            Sub => "-",
            Add => "+",
            Mul => "*",
            Mod => "%",
            Div => "/",
            Eqlc => "==",
            Neq => "!=",
            Lte => "<=",
            Lss => "<",
            Gte => ">=",
            Gtr => ">",
            EqlRegex => "=~",
            NeqRegex => "!~",
            Pow => "^",
            At => "@",
            Land => "and",
            Lor => "or",
            Lunless => "unless",
            Atan2 => "atan2",
            Avg => "avg",
            Bottomk => "bottomk",
            Count => "count",
            CountValues => "count_values",
            Group => "group",
            Max => "max",
            Min => "min",
            Quantile => "quantile",
            Stddev => "stddev",
            Stdvar => "stdvar",
            Sum => "sum",
            Topk => "topk",
            Limitk => "limitk",
            LimitRatio => "limit_ratio",
            Bool => "bool",
            By => "by",
            GroupLeft => "group_left",
            GroupRight => "group_right",
            Ignoring => "ignoring",
            Offset => "offset",
            On => "on",
            Without => "without",
            Start => "start",
            End => "end",
            Eof | Error | Comment | Identifier | MetricIdentifier | Number | Duration | String => {
                return None;
            }
        })
    }
}

/// The keyword a word lexes to (case-insensitively), as in Prometheus' `key` table.
fn keyword(word: &str) -> Option<Kind> {
    use Kind::*;
    Some(match word.to_ascii_lowercase().as_str() {
        "and" => Land,
        "or" => Lor,
        "unless" => Lunless,
        "atan2" => Atan2,
        "sum" => Sum,
        "avg" => Avg,
        "count" => Count,
        "min" => Min,
        "max" => Max,
        "group" => Group,
        "stddev" => Stddev,
        "stdvar" => Stdvar,
        "topk" => Topk,
        "bottomk" => Bottomk,
        "count_values" => CountValues,
        "quantile" => Quantile,
        "limitk" => Limitk,
        "limit_ratio" => LimitRatio,
        "offset" => Offset,
        "by" => By,
        "without" => Without,
        "on" => On,
        "ignoring" => Ignoring,
        "group_left" => GroupLeft,
        "group_right" => GroupRight,
        "bool" => Bool,
        "start" => Start,
        "end" => End,
        "inf" | "nan" => Number,
        _ => return None,
    })
}

/// One token: its kind, byte position and text (for `Error`, the message).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub(crate) kind: Kind,
    pub(crate) pos: usize,
    pub(crate) val: String,
}

impl Item {
    /// Prometheus' `Item.String()`.
    fn string(&self) -> String {
        match self.kind {
            Kind::Eof => "EOF".to_owned(),
            Kind::Error => self.val.clone(),
            Kind::Identifier | Kind::MetricIdentifier => go_quote(&self.val),
            k if k.is_keyword() => format!("<{}>", self.val),
            k if k.is_operator() => format!("<op:{}>", self.val),
            k if k.is_aggregator() => format!("<aggr:{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                format!("{}...", go_quote(&head))
            }
            _ => go_quote(&self.val),
        }
    }

    /// Prometheus' `Item.desc()`: how an unexpected token is named in an error.
    pub(crate) fn desc(&self) -> String {
        if self.kind == Kind::At {
            // `@` is missing from Prometheus' `ItemTypeStr`, so its type prints as a number
            // (57400 in Prometheus 3.5's generated parser).
            return format!("\"<Item 57400>\" {}", self.string());
        }
        if self.kind.type_str().is_some() {
            return self.string();
        }
        let type_desc = match self.kind {
            Kind::Eof => return "end of input".to_owned(),
            Kind::Error => "error",
            Kind::Comment => "comment",
            Kind::Identifier => "identifier",
            Kind::MetricIdentifier => "metric identifier",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Duration => "duration",
            _ => "",
        };
        format!("{type_desc} {}", self.string())
    }
}

/// Go's `%q` of a string (`strconv.Quote`), for the characters queries contain.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of a rune.
pub(crate) fn go_quote_rune(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        '\u{fffd}' => out.push_str("\\ufffd"),
        c => out.push(c),
    }
}

fn is_space(c: Option<char>) -> bool {
    matches!(c, Some(' ' | '\t' | '\n' | '\r'))
}

fn is_alpha(c: Option<char>) -> bool {
    matches!(c, Some(c) if c == '_' || c.is_ascii_alphabetic())
}

fn is_digit(c: Option<char>) -> bool {
    matches!(c, Some(c) if c.is_ascii_digit())
}

fn is_alnum(c: Option<char>) -> bool {
    is_alpha(c) || is_digit(c)
}

#[derive(Clone, Copy)]
enum State {
    Statements,
    InsideBraces,
    DurationExpr,
    Space,
    String,
    RawString,
    Escape,
    NumberOrDuration,
    KeywordOrIdentifier,
    Identifier,
    LineComment,
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    width: usize,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    string_open: char,
    items: Vec<Item>,
}

/// Lexes `input` into tokens, stopping after the first error. Comments are dropped.
pub(crate) fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        width: 0,
        paren_depth: 0,
        brace_open: false,
        bracket_open: false,
        got_colon: false,
        got_duration: false,
        string_open: '"',
        items: Vec::new(),
    };
    let mut state = Some(State::Statements);
    // Every state consumes input or ends the scan, so the loop ends; the bound is a guard.
    let mut steps = 0usize;
    while let Some(s) = state {
        steps += 1;
        if steps > input.len().saturating_mul(4) + 16 {
            l.errorf("lexer did not advance".to_owned());
            break;
        }
        state = l.step(s);
    }
    if !matches!(
        l.items.last().map(|i| i.kind),
        Some(Kind::Eof | Kind::Error)
    ) {
        l.items.push(Item {
            kind: Kind::Eof,
            pos: input.len(),
            val: String::new(),
        });
    }
    l.items.retain(|i| i.kind != Kind::Comment);
    l.items
}

impl Lexer<'_> {
    fn next(&mut self) -> Option<char> {
        let Some(c) = self.input.get(self.pos..).and_then(|s| s.chars().next()) else {
            self.width = 0;
            return None;
        };
        self.width = c.len_utf8();
        self.pos += self.width;
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        let c = self.next();
        self.backup();
        c
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn emit(&mut self, kind: Kind) {
        let val = self
            .input
            .get(self.start..self.pos)
            .unwrap_or("")
            .to_owned();
        self.items.push(Item {
            kind,
            pos: self.start,
            val,
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    fn accept(&mut self, valid: &str) -> bool {
        if matches!(self.next(), Some(c) if valid.contains(c)) {
            return true;
        }
        self.backup();
        false
    }

    fn accept_run(&mut self, valid: &str) {
        while matches!(self.next(), Some(c) if valid.contains(c)) {}
        self.backup();
    }

    /// Ends the scan with an error token at the start of the pending token.
    fn errorf(&mut self, message: String) -> Option<State> {
        self.items.push(Item {
            kind: Kind::Error,
            pos: self.start,
            val: message,
        });
        None
    }

    fn pending(&self) -> &str {
        self.input.get(self.start..self.pos).unwrap_or("")
    }

    fn step(&mut self, state: State) -> Option<State> {
        match state {
            State::Statements => self.statements(),
            State::InsideBraces => self.inside_braces(),
            State::DurationExpr => self.duration_expr(),
            State::Space => {
                while is_space(self.peek()) {
                    self.next();
                }
                self.ignore();
                Some(State::Statements)
            }
            State::String => self.string(),
            State::RawString => self.raw_string(),
            State::Escape => self.escape(),
            State::NumberOrDuration => self.number_or_duration(),
            State::KeywordOrIdentifier => self.keyword_or_identifier(),
            State::Identifier => {
                while is_alnum(self.next()) {}
                self.backup();
                self.emit(Kind::Identifier);
                Some(State::Statements)
            }
            State::LineComment => {
                self.pos += 1;
                loop {
                    match self.next() {
                        None => break,
                        Some('\r' | '\n') => {
                            self.backup();
                            break;
                        }
                        Some(_) => {}
                    }
                }
                self.emit(Kind::Comment);
                Some(State::Statements)
            }
        }
    }

    fn statements(&mut self) -> Option<State> {
        if self.brace_open {
            return Some(State::InsideBraces);
        }
        if self
            .input
            .get(self.pos..)
            .is_some_and(|s| s.starts_with('#'))
        {
            return Some(State::LineComment);
        }
        let Some(r) = self.next() else {
            if self.paren_depth != 0 {
                return self.errorf("unclosed left parenthesis".to_owned());
            }
            if self.bracket_open {
                return self.errorf("unclosed left bracket".to_owned());
            }
            self.emit(Kind::Eof);
            return None;
        };
        match r {
            ',' => self.emit(Kind::Comma),
            c if is_space(Some(c)) => return Some(State::Space),
            '*' => self.emit(Kind::Mul),
            '/' => self.emit(Kind::Div),
            '%' => self.emit(Kind::Mod),
            '+' => self.emit(Kind::Add),
            '-' => self.emit(Kind::Sub),
            '^' => self.emit(Kind::Pow),
            '=' => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Kind::Eqlc);
                }
                Some('~') => {
                    return self.errorf("unexpected character after '=': '~'".to_owned());
                }
                _ => self.emit(Kind::Eql),
            },
            '!' => match self.next() {
                Some('=') => self.emit(Kind::Neq),
                t => {
                    return self.errorf(format!(
                        "unexpected character after '!': {}",
                        rune_or_eof(t)
                    ));
                }
            },
            '<' => {
                if self.peek() == Some('=') {
                    self.next();
                    self.emit(Kind::Lte);
                } else {
                    self.emit(Kind::Lss);
                }
            }
            '>' => {
                if self.peek() == Some('=') {
                    self.next();
                    self.emit(Kind::Gte);
                } else {
                    self.emit(Kind::Gtr);
                }
            }
            c if c.is_ascii_digit() || (c == '.' && is_digit(self.peek())) => {
                self.backup();
                return Some(State::NumberOrDuration);
            }
            '"' | '\'' => {
                self.string_open = r;
                return Some(State::String);
            }
            '`' => {
                self.string_open = r;
                return Some(State::RawString);
            }
            c if is_alpha(Some(c)) || c == ':' => {
                if !self.bracket_open {
                    self.backup();
                    return Some(State::KeywordOrIdentifier);
                }
                if self.got_colon {
                    return self.errorf(format!("unexpected colon {}", go_quote_rune(c)));
                }
                self.emit(Kind::Colon);
                self.got_colon = true;
            }
            '(' => {
                self.emit(Kind::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(Kind::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    // Prometheus' error token takes the place of the parenthesis.
                    self.items.pop();
                    return self.errorf("unexpected right parenthesis ')'".to_owned());
                }
            }
            '{' => {
                self.emit(Kind::LeftBrace);
                self.brace_open = true;
                return Some(State::InsideBraces);
            }
            '[' => {
                if self.bracket_open {
                    return self.errorf("unexpected left bracket '['".to_owned());
                }
                self.got_colon = false;
                self.emit(Kind::LeftBracket);
                while is_space(self.peek()) {
                    self.next();
                }
                self.ignore();
                self.bracket_open = true;
                return Some(State::DurationExpr);
            }
            ']' => {
                if !self.bracket_open {
                    return self.errorf("unexpected right bracket ']'".to_owned());
                }
                self.emit(Kind::RightBracket);
                self.bracket_open = false;
            }
            '@' => self.emit(Kind::At),
            c => return self.errorf(format!("unexpected character: {}", go_quote_rune(c))),
        }
        Some(State::Statements)
    }

    fn inside_braces(&mut self) -> Option<State> {
        if self
            .input
            .get(self.pos..)
            .is_some_and(|s| s.starts_with('#'))
        {
            return Some(State::LineComment);
        }
        let Some(r) = self.next() else {
            return self.errorf("unexpected end of input inside braces".to_owned());
        };
        match r {
            c if is_space(Some(c)) => return Some(State::Space),
            c if is_alpha(Some(c)) => {
                self.backup();
                return Some(State::Identifier);
            }
            ',' => self.emit(Kind::Comma),
            '"' | '\'' => {
                self.string_open = r;
                return Some(State::String);
            }
            '`' => {
                self.string_open = r;
                return Some(State::RawString);
            }
            '=' => {
                if self.next() == Some('~') {
                    self.emit(Kind::EqlRegex);
                } else {
                    self.backup();
                    self.emit(Kind::Eql);
                }
            }
            '!' => match self.next() {
                Some('~') => self.emit(Kind::NeqRegex),
                Some('=') => self.emit(Kind::Neq),
                nr => {
                    return self.errorf(format!(
                        "unexpected character after '!' inside braces: {}",
                        rune_or_eof(nr)
                    ));
                }
            },
            '{' => return self.errorf("unexpected left brace '{'".to_owned()),
            '}' => {
                self.emit(Kind::RightBrace);
                self.brace_open = false;
                return Some(State::Statements);
            }
            c => {
                return self.errorf(format!(
                    "unexpected character inside braces: {}",
                    go_quote_rune(c)
                ));
            }
        }
        Some(State::InsideBraces)
    }

    fn escape(&mut self) -> Option<State> {
        let ch = self.next();
        let (mut n, base, max, mut ch) = match ch {
            Some(c) if "abfnrtv\\".contains(c) || c == self.string_open => {
                return Some(State::String);
            }
            Some(c @ '0'..='7') => (3, 8u32, 255u32, Some(c)),
            Some('x') => (2, 16, 255, self.next()),
            Some('u') => (4, 16, 0x10ffff, self.next()),
            Some('U') => (8, 16, 0x10ffff, self.next()),
            None => return self.errorf("escape sequence not terminated".to_owned()),
            Some(c) => {
                return self.errorf(format!("unknown escape sequence {}", go_unicode(c)));
            }
        };
        let mut x: u32 = 0;
        while n > 0 {
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                let Some(c) = ch else {
                    return self.errorf("escape sequence not terminated".to_owned());
                };
                return self.errorf(format!(
                    "illegal character {} in escape sequence",
                    go_unicode(c)
                ));
            }
            x = x.saturating_mul(base).saturating_add(d);
            ch = self.next();
            n -= 1;
        }
        // The loop read one character past the escape; Prometheus goes on from there.
        self.backup();
        if x > max || (0xD800..0xE000).contains(&x) {
            return self.errorf("escape sequence is an invalid Unicode code point".to_owned());
        }
        Some(State::String)
    }

    fn string(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => return Some(State::Escape),
                Some('\u{fffd}') => return self.errorf("invalid UTF-8 rune".to_owned()),
                None | Some('\n') => {
                    return self.errorf("unterminated quoted string".to_owned());
                }
                Some(c) if c == self.string_open => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String);
        Some(State::Statements)
    }

    fn raw_string(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some('\u{fffd}') => return self.errorf("invalid UTF-8 rune".to_owned()),
                None => return self.errorf("unterminated raw string".to_owned()),
                Some(c) if c == self.string_open => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String);
        Some(State::Statements)
    }

    /// Prometheus 3's `lexDurationExpr`: the first token after `[`.
    fn duration_expr(&mut self) -> Option<State> {
        let Some(r) = self.next() else {
            return self.errorf("unexpected end of input in duration expression".to_owned());
        };
        match r {
            ']' => {
                self.emit(Kind::RightBracket);
                self.bracket_open = false;
                self.got_colon = false;
                return Some(State::Statements);
            }
            ':' => {
                self.emit(Kind::Colon);
                if !self.got_duration {
                    return self.errorf(
                        "unexpected colon before duration in duration expression".to_owned(),
                    );
                }
                if self.got_colon {
                    return self
                        .errorf("unexpected repeated colon in duration expression".to_owned());
                }
                self.got_colon = true;
            }
            '(' => {
                self.emit(Kind::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(Kind::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    self.items.pop();
                    return self.errorf("unexpected right parenthesis ')'".to_owned());
                }
            }
            c if is_space(Some(c)) => {
                while is_space(self.peek()) {
                    self.next();
                }
                self.ignore();
            }
            '+' => self.emit(Kind::Add),
            '-' => self.emit(Kind::Sub),
            '*' => self.emit(Kind::Mul),
            '/' => self.emit(Kind::Div),
            '%' => self.emit(Kind::Mod),
            '^' => self.emit(Kind::Pow),
            c if c.is_ascii_digit() || (c == '.' && is_digit(self.peek())) => {
                self.backup();
                self.got_duration = true;
                return Some(State::NumberOrDuration);
            }
            c => {
                return self.errorf(format!(
                    "unexpected character in duration expression: {}",
                    go_quote_rune(c)
                ));
            }
        }
        Some(State::DurationExpr)
    }

    fn number_or_duration(&mut self) -> Option<State> {
        if self.scan_number() {
            self.emit(Kind::Number);
            return Some(State::Statements);
        }
        if self.accept_remaining_duration() {
            self.backup();
            self.emit(Kind::Duration);
            return Some(State::Statements);
        }
        let pending = self.pending().to_owned();
        self.errorf(format!(
            "bad number or duration syntax: {}",
            go_quote(&pending)
        ))
    }

    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        !is_alnum(self.next())
    }

    /// Whether the next rune is one of `valid` (without consuming it).
    fn is(&mut self, valid: &str) -> bool {
        matches!(self.peek(), Some(c) if valid.contains(c))
    }

    /// Prometheus 3's `scanNumber`: decimal, hexadecimal, `_` separators, exponents.
    fn scan_number(&mut self) -> bool {
        const DOT: &str = ".";
        const EXPONENT: &str = "eE";
        const UNDERSCORE: &str = "_";
        const DOT_ANTI: &str = "_.";
        const EXPONENT_ANTI: &str = "._eE";
        const UNDERSCORE_ANTI: &str = "._eE";
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        self.accept(DOT);
        self.accept(digits);
        let mut dot_consumed = false;
        let mut exponent_consumed = false;
        let all = format!("{digits}{DOT}{UNDERSCORE}{EXPONENT}");
        while self.is(&all) {
            if self.is(DOT) && dot_consumed {
                self.accept(DOT);
                return false;
            }
            if self.is(EXPONENT) && exponent_consumed {
                self.accept(EXPONENT);
                return false;
            }
            if self.accept(DOT) {
                dot_consumed = true;
                if self.accept(DOT_ANTI) {
                    return false;
                }
                if digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept(EXPONENT) {
                exponent_consumed = true;
                self.accept("+-");
                if self.accept(EXPONENT_ANTI) || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept(UNDERSCORE) {
                if self.accept(UNDERSCORE_ANTI) || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            self.accept_run(digits);
        }
        if self.pos == initial {
            return false;
        }
        !is_alnum(self.peek())
    }

    fn keyword_or_identifier(&mut self) -> Option<State> {
        loop {
            let r = self.next();
            if is_alnum(r) || r == Some(':') {
                continue;
            }
            self.backup();
            let word = self.pending().to_owned();
            if let Some(kind) = keyword(&word) {
                self.emit(kind);
            } else if !word.contains(':') {
                self.emit(Kind::Identifier);
            } else {
                self.emit(Kind::MetricIdentifier);
            }
            return Some(State::Statements);
        }
    }
}

fn rune_or_eof(c: Option<char>) -> String {
    // Go's lexer reads end of input as the rune -1, which `%q` prints as the replacement
    // character.
    match c {
        Some(c) => go_quote_rune(c),
        None => "'\u{fffd}'".to_owned(),
    }
}

/// Go's `%#U` of a rune: `U+0071 'q'`.
fn go_unicode(c: char) -> String {
    let code = c as u32;
    if c.is_control() {
        return format!("U+{code:04X}");
    }
    format!("U+{code:04X} '{c}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<Kind> {
        lex(input).into_iter().map(|i| i.kind).collect()
    }

    #[test]
    fn lexes_a_query() {
        use Kind::*;
        assert_eq!(
            kinds("sum by (job) (rate(x{a=~\"b\"}[5m] offset 1h)) > bool 0.5 # c"),
            vec![
                Sum,
                By,
                LeftParen,
                Identifier,
                RightParen,
                LeftParen,
                Identifier,
                LeftParen,
                Identifier,
                LeftBrace,
                Identifier,
                EqlRegex,
                String,
                RightBrace,
                LeftBracket,
                Duration,
                RightBracket,
                Offset,
                Duration,
                RightParen,
                RightParen,
                Gtr,
                Bool,
                Number,
                Eof
            ]
        );
    }

    #[test]
    fn errors_carry_prometheus_positions() {
        let last = |q: &str| lex(q).pop().map(|i| (i.pos, i.val));
        assert_eq!(
            last("sum(rate(x[5m])"),
            Some((15, "unclosed left parenthesis".to_owned()))
        );
        assert_eq!(
            last("(x))"),
            Some((4, "unexpected right parenthesis ')'".to_owned()))
        );
        assert_eq!(
            last("x[5m::]"),
            Some((5, "unexpected colon ':'".to_owned()))
        );
        assert_eq!(
            last("foo{a=1}"),
            Some((6, "unexpected character inside braces: '1'".to_owned()))
        );
        assert_eq!(
            last("foo{a=\"\\q\"}"),
            Some((6, "unknown escape sequence U+0071 'q'".to_owned()))
        );
    }
}

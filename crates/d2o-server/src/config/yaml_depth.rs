//! A bound on the nesting of YAML flow collections, checked before the YAML parser runs.

/// The deepest nesting of YAML flow collections (`[...]`, `{...}`) a configuration may use.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses text whose flow collections may nest deeper than [`MAX_FLOW_DEPTH`], before the YAML
/// parser reads it.
///
/// libyaml's scanner does work proportional to the current flow depth for every token, so
/// `[[[[...` takes quadratic time (10,000 levels took over a second in a debug build; 1 MB would
/// take hours), all of it before serde_yaml_ng's own depth limit applies. Bounding the depth
/// makes parsing linear.
pub(super) fn check_flow_depth(text: &str) -> Result<(), String> {
    match flow_depth_bound(text, MAX_FLOW_DEPTH) {
        Some(line) => {
            Err(format!("line {line}: flow collections ([...] or {{...}}) are nested more than {MAX_FLOW_DEPTH} deep"))
        }
        None => Ok(()),
    }
}

/// The line at which flow collections may first nest deeper than `limit`, or `None`.
///
/// The bound must hold however quotes, comments or tags hide brackets, so this follows every
/// reading libyaml could have of the text at once, keeping the deepest nesting of the readings
/// in each lexical state (one pass, ten states: linear time). Outside flow collections every
/// `[` or `{` is taken as a possible start of one, since telling a plain scalar's continuation
/// line or a block scalar from new tokens takes the indentation rules: so a file with more
/// than `limit` unclosed brackets in its comments or quoted strings is refused too. Inside flow
/// collections, quoted and plain scalars, comments, anchors and tags are read as libyaml's
/// scanner reads them (no indentation matters there), with both readings kept where it would
/// skip a byte-order mark.
pub(crate) fn flow_depth_bound(text: &str, limit: usize) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum Lex {
        Start,
        Plain,
        Single,
        SingleSkip,
        Double,
        DoubleSkip,
        Comment,
        Anchor,
        Tag,
        Verbatim,
    }
    #[rustfmt::skip]
    const STATES: [Lex; 10] = [
        Lex::Start, Lex::Plain, Lex::Single, Lex::SingleSkip, Lex::Double, Lex::DoubleSkip, Lex::Comment, Lex::Anchor,
        Lex::Tag, Lex::Verbatim,
    ];
    type Moves = [Option<(Lex, i8)>; 2];
    let is_break = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let is_blank = |c: char| c == ' ' || c == '\t' || is_break(c);
    let is_blankz = |c: Option<char>| c.is_none_or(|c| is_blank(c) || c == '\0');
    let one = |lex: Lex, delta: i8| -> Moves { [Some((lex, delta)), None] };
    // Between tokens inside a flow collection (libyaml's `fetch_next_token`).
    let start = |c: char, next: Option<char>| -> Moves {
        match c {
            '#' => one(Lex::Comment, 0),
            '\'' => one(Lex::Single, 0),
            '"' => one(Lex::Double, 0),
            '[' | '{' => one(Lex::Start, 1),
            ']' | '}' => one(Lex::Start, -1),
            '!' if next == Some('<') => one(Lex::Verbatim, 0),
            '!' => one(Lex::Tag, 0),
            '&' | '*' => one(Lex::Anchor, 0),
            '-' if !is_blankz(next) => one(Lex::Plain, 0),
            '\u{feff}' => [Some((Lex::Start, 0)), Some((Lex::Plain, 0))],
            c if is_blank(c) || matches!(c, ',' | '-' | '?' | ':') => one(Lex::Start, 0),
            _ => one(Lex::Plain, 0),
        }
    };
    // reach[i]: the deepest nesting among the readings in state STATES[i]; 0 when there is none.
    let mut reach = [0usize; STATES.len()];
    let (mut line, mut after_blank) = (1, true);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let mut moved = [0usize; STATES.len()];
        let mut apply = |moves: Moves, depth: usize| {
            for (lex, delta) in moves.into_iter().flatten() {
                // A reading whose depth falls to 0 is back in block context, which is always
                // followed anyway.
                let depth = depth.saturating_add_signed(delta.into());
                let slot = &mut moved[lex as usize];
                *slot = (*slot).max(depth);
            }
        };
        if c == '[' || c == '{' {
            apply(one(Lex::Start, 1), 0);
        }
        for (lex, &depth) in STATES.iter().zip(&reach) {
            if depth == 0 {
                continue;
            }
            let moves = match lex {
                Lex::Start => start(c, next),
                Lex::Plain => match c {
                    ',' | '[' | ']' | '{' | '}' => start(c, next),
                    ':' if is_blankz(next) || next.is_some_and(|n| ",?[]{}".contains(n)) => one(Lex::Start, 0),
                    '#' if after_blank => one(Lex::Comment, 0),
                    _ => one(Lex::Plain, 0),
                },
                Lex::Single => match c {
                    '\'' if next == Some('\'') => one(Lex::SingleSkip, 0),
                    '\'' => one(Lex::Start, 0),
                    _ => one(Lex::Single, 0),
                },
                Lex::SingleSkip => one(Lex::Single, 0),
                Lex::Double => match c {
                    '\\' => one(Lex::DoubleSkip, 0),
                    '"' => one(Lex::Start, 0),
                    _ => one(Lex::Double, 0),
                },
                Lex::DoubleSkip => one(Lex::Double, 0),
                Lex::Comment if is_break(c) => one(Lex::Start, 0),
                Lex::Comment => one(Lex::Comment, 0),
                Lex::Anchor if c.is_ascii_alphanumeric() || c == '_' || c == '-' => one(Lex::Anchor, 0),
                Lex::Anchor => start(c, next),
                Lex::Tag if is_blank(c) || matches!(c, ',' | '[' | ']' | '{' | '}') => start(c, next),
                Lex::Tag => one(Lex::Tag, 0),
                Lex::Verbatim if c == '>' => one(Lex::Start, 0),
                Lex::Verbatim => one(Lex::Verbatim, 0),
            };
            apply(moves, depth);
        }
        if moved.iter().any(|&d| d > limit) {
            return Some(line);
        }
        reach = moved;
        after_blank = is_blank(c);
        line += usize::from(c == '\n');
    }
    None
}

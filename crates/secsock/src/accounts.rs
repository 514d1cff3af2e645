//! Principal → local account rules: the policy's `[[accounts]]` ([`AccountRule`]), how a
//! proven principal is mapped through them to an account name ([`map_principal`]), and
//! how a rule is checked ([`validate_rule`]).
//!
//! This module is pure: it matches text against patterns and reads numbers from a
//! `login.defs` text. It does not look accounts up, decide whether one may be
//! impersonated, or touch any credential; that is [`crate::impersonate`]'s business (its
//! `account_for_peer` uses these rules, then the name service, then its own checks).

/// One `[[accounts]]` rule of the policy: a principal pattern and the local account it
/// maps to.
///
/// ```toml
/// [[accounts]]
/// principal = "user:*@EXAMPLE.TEST"   # `*` matches one name component
/// user = "{name}"                      # what the first `*` matched
///
/// [[accounts]]
/// principal = "host/backup.example.test"
/// user = "backup"                      # a system account (uid below UID_MIN) ...
/// allow_system_account = true          # ... which this rule, and only it, may name
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRule {
    /// The pattern: a principal's canonical text in which each `*` matches one name
    /// component (one or more characters, none of them `@`, `/`, `.` or `:`). At most four
    /// `*`. The part after the first `@` (realm or domain) matches ASCII-case-insensitively,
    /// the rest exactly.
    pub principal: String,
    /// The local account: a name, or a template in which `{name}` stands for what the
    /// first `*` of the pattern matched.
    pub user: String,
    /// Whether this rule may map to a system account: one whose uid is below the
    /// system's `UID_MIN` (`/etc/login.defs`, 1000 when unset). Off by default, so that a
    /// `{name}` template cannot turn a peer that proved `user:daemon@REALM` into the
    /// `daemon` account. Root (uid 0) and accounts in group 0 stay refused even so.
    pub allow_system_account: bool,
}

impl AccountRule {
    /// A rule mapping principals matching `principal` to the account `user`; system
    /// accounts are refused (see [`AccountRule::allowing_system_account`]).
    pub fn new(principal: impl Into<String>, user: impl Into<String>) -> AccountRule {
        AccountRule {
            principal: principal.into(),
            user: user.into(),
            allow_system_account: false,
        }
    }

    /// The same rule, allowed to map to a system account (uid below `UID_MIN`), as the
    /// policy's `allow_system_account = true` does.
    ///
    /// ```
    /// use secsock::accounts::AccountRule;
    ///
    /// let rule = AccountRule::new("host/backup.example.test", "backup").allowing_system_account();
    /// assert!(rule.allow_system_account);
    /// ```
    pub fn allowing_system_account(self) -> AccountRule {
        AccountRule {
            allow_system_account: true,
            ..self
        }
    }
}

/// Where a principal maps to: the local account's name and the rule that named it
/// (which decides, among other things, whether a system account is acceptable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMapping<'r> {
    /// The local account's name, `{name}` filled in.
    pub account: String,
    /// The first rule that matched.
    pub rule: &'r AccountRule,
}

/// The most `*` a pattern may have: keeps matching cheap and patterns readable.
const MAX_WILDCARDS: usize = 4;

/// The only placeholder a rule's `user` may use.
const NAME_PLACEHOLDER: &str = "{name}";

/// Checks one rule, for the policy loader: the reason it is wrong, as a sentence about
/// the rule.
pub fn validate_rule(rule: &AccountRule) -> Result<(), String> {
    let pattern = &rule.principal;
    let user = &rule.user;
    if pattern.is_empty() {
        return Err("`principal` is empty; give a principal such as `user:*@EXAMPLE.TEST`".into());
    }
    if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`principal` = `{pattern}` contains a space or a control character, which no principal has"
        ));
    }
    let wildcards = pattern.matches('*').count();
    if wildcards > MAX_WILDCARDS {
        return Err(format!(
            "`principal` = `{pattern}` has {wildcards} `*`; at most {MAX_WILDCARDS} are allowed"
        ));
    }
    if pattern.contains("**") {
        return Err(format!(
            "`principal` = `{pattern}` has `**`; a `*` matches one whole name component, so \
             two in a row cannot be told apart"
        ));
    }
    if user.is_empty() {
        return Err(format!(
            "`user` is empty; name the local account `{pattern}` maps to, or use `{NAME_PLACEHOLDER}`"
        ));
    }
    // Placeholders: only `{name}`, braces balanced.
    let mut rest = user.as_str();
    let mut uses_name = false;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!(
                "`user` = `{user}` has a `}}` without a `{{`; the only placeholder is `{NAME_PLACEHOLDER}`"
            ));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "`user` = `{user}` has a `{{` without a `}}`; the only placeholder is `{NAME_PLACEHOLDER}`"
            ));
        };
        let placeholder = &rest[open..open + close + 1];
        if placeholder != NAME_PLACEHOLDER {
            return Err(format!(
                "`user` = `{user}` has the unknown placeholder `{placeholder}`; the only placeholder is `{NAME_PLACEHOLDER}`"
            ));
        }
        uses_name = true;
        rest = &rest[open + close + 1..];
    }
    if uses_name && wildcards == 0 {
        return Err(format!(
            "`user` = `{user}` uses `{NAME_PLACEHOLDER}`, but `principal` = `{pattern}` has no `*` to take the name from"
        ));
    }
    if user
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ':')
    {
        return Err(format!(
            "`user` = `{user}` contains a space, a control character, `/` or `:`, which no local account name has"
        ));
    }
    Ok(())
}

/// Maps a principal (its canonical text, e.g. `user:alice@EXAMPLE.TEST` or
/// `host/db.example.test`) through `rules` to a local account name, with the rule that
/// named it; the first rule that matches wins. Rules that [`validate_rule`] refuses never
/// match. Only names: whether the account exists and may be impersonated is
/// [`account_for_peer`](crate::impersonate::account_for_peer)'s to say.
///
/// ```
/// use secsock::accounts::{map_principal, AccountRule};
///
/// let rules = [
///     AccountRule::new("user:admin@EXAMPLE.TEST", "ops"),
///     AccountRule::new("user:*@EXAMPLE.TEST", "{name}"),
///     AccountRule::new("host/backup.example.test", "backup").allowing_system_account(),
/// ];
/// let account = |principal| map_principal(&rules, principal).map(|m| m.account);
/// assert_eq!(account("user:admin@EXAMPLE.TEST").as_deref(), Some("ops"));
/// assert_eq!(account("user:alice@example.test").as_deref(), Some("alice"));
/// assert_eq!(account("user:alice@OTHER.TEST"), None);
///
/// let backup = map_principal(&rules, "host/backup.example.test").unwrap();
/// assert_eq!(backup.account, "backup");
/// assert!(backup.rule.allow_system_account);
/// ```
pub fn map_principal<'r>(rules: &'r [AccountRule], principal: &str) -> Option<AccountMapping<'r>> {
    rules.iter().find_map(|rule| map_with_rule(rule, principal))
}

/// The account one rule maps `principal` to, if the rule is valid and matches.
pub(crate) fn map_with_rule<'r>(
    rule: &'r AccountRule,
    principal: &str,
) -> Option<AccountMapping<'r>> {
    if validate_rule(rule).is_err() {
        return None;
    }
    let account = match match_pattern(&rule.principal, principal)? {
        Some(name) => rule.user.replace(NAME_PLACEHOLDER, &name),
        // validate_rule guarantees no `{name}` without a `*`.
        None => rule.user.clone(),
    };
    Some(AccountMapping { account, rule })
}

/// `UID_MIN` when `login.defs` does not set it: shadow-utils' and systemd's default.
pub(crate) const DEFAULT_UID_MIN: u32 = 1000;

/// The number `key` is set to in a `login.defs` text: lines of `KEY VALUE` separated by
/// white space, `#` starting a comment; the last valid setting wins (as in
/// shadow-utils). Decimal, `0x` hexadecimal or `0` octal, as `strtoul` reads them.
pub(crate) fn login_defs_value(text: &str, key: &str) -> Option<u32> {
    let mut found = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }
        let Some(value) = fields.next() else {
            continue;
        };
        let value = value.trim_matches('"');
        let parsed = if let Some(hex) = value
            .strip_prefix("0x")
            .or_else(|| value.strip_prefix("0X"))
        {
            u32::from_str_radix(hex, 16)
        } else if value.len() > 1 && value.starts_with('0') {
            u32::from_str_radix(&value[1..], 8)
        } else {
            value.parse()
        };
        if let Ok(number) = parsed {
            found = Some(number);
        }
    }
    found
}

/// Whether `c` may be part of what one `*` matches.
fn in_component(c: char) -> bool {
    !matches!(c, '@' | '/' | '.' | ':')
}

/// One literal character of a pattern, and whether it compares ASCII-case-insensitively
/// (it lies after the pattern's first `@`).
#[derive(Clone, Copy)]
struct Literal {
    c: char,
    ignore_case: bool,
}

impl Literal {
    fn matches(self, c: char) -> bool {
        if self.ignore_case {
            self.c.eq_ignore_ascii_case(&c)
        } else {
            self.c == c
        }
    }
}

/// A pattern split at its `*`: `literals[0] * literals[1] * ... * literals[n]`.
struct Pattern {
    literals: Vec<Vec<Literal>>,
}

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        let mut literals = vec![Vec::new()];
        let mut after_at = false;
        for c in pattern.chars() {
            if c == '*' {
                literals.push(Vec::new());
                continue;
            }
            // Stars never match `@`, so the pattern's first `@` always lines up with the
            // principal's first `@`: what follows it is the realm or domain on both sides.
            let ignore_case = after_at;
            if c == '@' {
                after_at = true;
            }
            if let Some(last) = literals.last_mut() {
                last.push(Literal { c, ignore_case });
            }
        }
        Pattern { literals }
    }

    fn wildcards(&self) -> usize {
        self.literals.len() - 1
    }
}

/// Matches `text` against `pattern`: `None` when it does not match, else what the first
/// `*` matched (`Some(None)` for a pattern without `*`). When the first `*` could match
/// more than one way, it takes the shortest match that lets the rest match.
fn match_pattern(pattern: &str, text: &str) -> Option<Option<String>> {
    let pattern = Pattern::parse(pattern);
    if pattern.wildcards() > MAX_WILDCARDS {
        return None;
    }
    let text: Vec<char> = text.chars().collect();
    let mut matcher = Matcher {
        pattern: &pattern,
        text: &text,
        memo: vec![None; pattern.wildcards() * (text.len() + 1)],
    };
    let first = &pattern.literals[0];
    let start = matcher.literal_at(first, 0)?;
    if pattern.wildcards() == 0 {
        return (start == text.len()).then_some(None);
    }
    // Try the first star's matches shortest first, so that the capture is well defined.
    for end in start + 1..=text.len() {
        if !in_component(text[end - 1]) {
            break;
        }
        if matcher.after_star(0, end) {
            return Some(Some(text[start..end].iter().collect()));
        }
    }
    None
}

/// Matching state: memoized on (star, position), so a pattern costs at most
/// `stars × text length × component length` steps, whatever the input.
struct Matcher<'a> {
    pattern: &'a Pattern,
    text: &'a [char],
    memo: Vec<Option<bool>>,
}

impl Matcher<'_> {
    /// Where the literal run ends if it matches `text` at `at`.
    fn literal_at(&self, literal: &[Literal], at: usize) -> Option<usize> {
        let end = at + literal.len();
        let slice = self.text.get(at..end)?;
        literal
            .iter()
            .zip(slice)
            .all(|(l, &c)| l.matches(c))
            .then_some(end)
    }

    /// Whether the rest of the pattern matches when star `star` ended at `at`.
    fn after_star(&mut self, star: usize, at: usize) -> bool {
        let key = star * (self.text.len() + 1) + at;
        if let Some(known) = self.memo[key] {
            return known;
        }
        let pattern = self.pattern;
        let result = match self.literal_at(&pattern.literals[star + 1], at) {
            None => false,
            Some(next) if star + 1 == pattern.wildcards() => next == self.text.len(),
            Some(next) => {
                let mut found = false;
                for end in next + 1..=self.text.len() {
                    if !in_component(self.text[end - 1]) {
                        break;
                    }
                    if self.after_star(star + 1, end) {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        self.memo[key] = Some(result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(principal: &str, user: &str) -> AccountRule {
        AccountRule::new(principal, user)
    }

    /// The account name `map_principal` gives, without the rule.
    fn mapped(rules: &[AccountRule], principal: &str) -> Option<String> {
        map_principal(rules, principal).map(|m| m.account)
    }

    #[test]
    fn map_principal_table() {
        // (pattern, user, principal, expected account)
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            // The policy example.
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:alice@EXAMPLE.TEST",
                Some("alice"),
            ),
            // The realm is ASCII-case-insensitive, on both sides.
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:alice@example.test",
                Some("alice"),
            ),
            (
                "user:*@example.test",
                "{name}",
                "user:alice@Example.Test",
                Some("alice"),
            ),
            // The rest is case-sensitive: the name is captured as the peer spelled it ...
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:Alice@EXAMPLE.TEST",
                Some("Alice"),
            ),
            // ... and literal text must match exactly.
            (
                "user:alice@EXAMPLE.TEST",
                "a",
                "user:Alice@EXAMPLE.TEST",
                None,
            ),
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "USER:alice@EXAMPLE.TEST",
                None,
            ),
            // A different realm does not match.
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:alice@OTHER.TEST",
                None,
            ),
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:alice@EXAMPLE.TEST.EVIL",
                None,
            ),
            // `*` is one component: no `.`, `@`, `/` or `:` inside, at least one character.
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:alice.smith@EXAMPLE.TEST",
                None,
            ),
            ("user:*@EXAMPLE.TEST", "{name}", "user:@EXAMPLE.TEST", None),
            (
                "host/*.example.test",
                "svc-{name}",
                "host/db.example.test",
                Some("svc-db"),
            ),
            (
                "host/*.example.test",
                "svc-{name}",
                "host/a.db.example.test",
                None,
            ),
            (
                "host/*.example.test",
                "svc-{name}",
                "host/db.example.test:443",
                None,
            ),
            (
                "host/*.example.test",
                "svc-{name}",
                "host/db.example.test@REALM",
                None,
            ),
            // Several stars: `{name}` is the first.
            (
                "*/*.example.test",
                "{name}",
                "http/web.example.test",
                Some("http"),
            ),
            (
                "*/*.*.test",
                "{name}-x",
                "ldap/dc.corp.test",
                Some("ldap-x"),
            ),
            // Stars inside a component, with a literal that could also be matched by `*`.
            (
                "user:*-admin@EXAMPLE.TEST",
                "{name}",
                "user:bob-admin@EXAMPLE.TEST",
                Some("bob"),
            ),
            (
                "user:*-admin@EXAMPLE.TEST",
                "{name}",
                "user:bob-x-admin@EXAMPLE.TEST",
                Some("bob-x"),
            ),
            (
                "user:*-admin@EXAMPLE.TEST",
                "{name}",
                "user:-admin@EXAMPLE.TEST",
                None,
            ),
            // Ambiguous: the first star takes the shortest match that works.
            (
                "user:*-*@EXAMPLE.TEST",
                "{name}",
                "user:a-b-c@EXAMPLE.TEST",
                Some("a"),
            ),
            // A star in the realm is case-insensitive around it, and can be `{name}`.
            (
                "user:alice@*.TEST",
                "{name}",
                "user:alice@corp.test",
                Some("corp"),
            ),
            // No star: a fixed account, matched whole.
            (
                "host/db.example.test",
                "postgres",
                "host/db.example.test",
                Some("postgres"),
            ),
            (
                "host/db.example.test",
                "postgres",
                "host/db.example.test.evil",
                None,
            ),
            (
                "host/db.example.test",
                "postgres",
                "host/db.example.tes",
                None,
            ),
            // SPIFFE IDs.
            (
                "spiffe://example.test/ns/*/sa/*",
                "{name}",
                "spiffe://example.test/ns/prod/sa/web",
                Some("prod"),
            ),
            // `{name}` used twice.
            (
                "user:*@EXAMPLE.TEST",
                "{name}_{name}",
                "user:bo@EXAMPLE.TEST",
                Some("bo_bo"),
            ),
            // Non-ASCII is compared exactly.
            (
                "user:*@EXAMPLE.TEST",
                "{name}",
                "user:jürgen@EXAMPLE.TEST",
                Some("jürgen"),
            ),
            (
                "user:jürgen@EXAMPLE.TEST",
                "j",
                "user:JÜRGEN@EXAMPLE.TEST",
                None,
            ),
            // Invalid rules never match.
            ("user:*@*.*.*.*.TEST", "{name}", "user:a@b.c.d.e.TEST", None),
            (
                "user:**@EXAMPLE.TEST",
                "{name}",
                "user:ab@EXAMPLE.TEST",
                None,
            ),
            (
                "user:alice@EXAMPLE.TEST",
                "{name}",
                "user:alice@EXAMPLE.TEST",
                None,
            ),
            ("user:*@EXAMPLE.TEST", "", "user:alice@EXAMPLE.TEST", None),
        ];
        for &(pattern, user, principal, expected) in cases {
            assert_eq!(
                mapped(&[rule(pattern, user)], principal).as_deref(),
                expected,
                "pattern `{pattern}` user `{user}` principal `{principal}`"
            );
        }
    }

    #[test]
    fn map_principal_first_match_wins() {
        let rules = [
            rule("user:admin@EXAMPLE.TEST", "ops"),
            rule("user:*@EXAMPLE.TEST", "{name}"),
            rule("user:alice@EXAMPLE.TEST", "never"),
        ];
        assert_eq!(
            mapped(&rules, "user:admin@EXAMPLE.TEST").as_deref(),
            Some("ops")
        );
        assert_eq!(
            mapped(&rules, "user:alice@EXAMPLE.TEST").as_deref(),
            Some("alice")
        );
        assert_eq!(mapped(&[], "user:alice@EXAMPLE.TEST"), None);
        // An invalid rule is skipped, not an end to the search.
        let rules = [
            rule("user:**@EXAMPLE.TEST", "x"),
            rule("user:*@EXAMPLE.TEST", "{name}"),
        ];
        assert_eq!(
            mapped(&rules, "user:bob@EXAMPLE.TEST").as_deref(),
            Some("bob")
        );
    }

    #[test]
    fn matching_long_inputs_stays_cheap() {
        // Four stars that each could stop at many places; memoization keeps this fast.
        let pattern = "user:*a*a*a*b@EXAMPLE.TEST";
        let principal = format!("user:{}@EXAMPLE.TEST", "a".repeat(1000));
        let started = std::time::Instant::now();
        assert_eq!(mapped(&[rule(pattern, "{name}")], &principal), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let principal = format!("user:{}b@EXAMPLE.TEST", "a".repeat(1000));
        assert_eq!(
            mapped(&[rule(pattern, "{name}")], &principal).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn validate_rule_table() {
        // (pattern, user, expected error fragment or None when valid)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("user:*@EXAMPLE.TEST", "{name}", None),
            ("host/*.example.test", "svc-{name}", None),
            ("host/db.example.test", "postgres", None),
            ("user:*@*.*.*.TEST", "{name}", None),
            ("", "x", Some("`principal` is empty")),
            (
                "user:a b@EXAMPLE.TEST",
                "x",
                Some("contains a space or a control character"),
            ),
            (
                "user:*@*.*.*.*.TEST",
                "{name}",
                Some("has 5 `*`; at most 4 are allowed"),
            ),
            ("user:**@EXAMPLE.TEST", "{name}", Some("has `**`")),
            ("user:*@EXAMPLE.TEST", "", Some("`user` is empty")),
            (
                "user:alice@EXAMPLE.TEST",
                "{name}",
                Some("has no `*` to take the name from"),
            ),
            (
                "user:*@EXAMPLE.TEST",
                "{user}",
                Some("unknown placeholder `{user}`"),
            ),
            (
                "user:*@EXAMPLE.TEST",
                "{Name}",
                Some("unknown placeholder `{Name}`"),
            ),
            ("user:*@EXAMPLE.TEST", "{name", Some("a `{` without a `}`")),
            ("user:*@EXAMPLE.TEST", "name}", Some("a `}` without a `{`")),
            ("user:*@EXAMPLE.TEST", "a b", Some("contains a space")),
            ("user:*@EXAMPLE.TEST", "../{name}", Some("`/`")),
            ("user:*@EXAMPLE.TEST", "a:b", Some("`:`")),
        ];
        for &(pattern, user, expected) in cases {
            let result = validate_rule(&rule(pattern, user));
            match (expected, &result) {
                (None, Ok(())) => {}
                (Some(fragment), Err(message)) => assert!(
                    message.contains(fragment),
                    "pattern `{pattern}` user `{user}`: `{message}` lacks `{fragment}`"
                ),
                _ => {
                    panic!("pattern `{pattern}` user `{user}`: got {result:?}, wanted {expected:?}")
                }
            }
        }
    }

    #[test]
    fn map_principal_names_the_rule() {
        let rules = [
            rule("user:*@EXAMPLE.TEST", "{name}"),
            rule("host/backup.example.test", "backup").allowing_system_account(),
        ];
        let user = map_principal(&rules, "user:alice@EXAMPLE.TEST").unwrap();
        assert_eq!((user.account.as_str(), user.rule), ("alice", &rules[0]));
        assert!(!user.rule.allow_system_account);
        let backup = map_principal(&rules, "host/backup.example.test").unwrap();
        assert_eq!(
            (backup.account.as_str(), backup.rule),
            ("backup", &rules[1])
        );
        assert!(backup.rule.allow_system_account);
    }

    #[test]
    fn uid_min_from_login_defs_table() {
        // (login.defs text, UID_MIN read from it)
        let cases: &[(&str, Option<u32>)] = &[
            ("", None),
            ("UID_MIN 1000\n", Some(1000)),
            ("UID_MIN\t\t\t 500\n", Some(500)),
            ("  UID_MIN   2000  \n", Some(2000)),
            // Comments, whole-line and trailing.
            ("#UID_MIN 500\nUID_MIN 1000\n", Some(1000)),
            ("# UID_MIN 500\n", None),
            ("UID_MIN 1500 # ordinary users\n", Some(1500)),
            ("UID_MIN 1500#x\n", Some(1500)),
            // Other keys, and keys that only start or end like it.
            ("SYS_UID_MIN 100\nUID_MAX 60000\nSUB_UID_MIN 100000\n", None),
            ("UID_MINIMUM 5\nXUID_MIN 5\n", None),
            ("uid_min 5\n", None),
            // The last valid setting wins, as in shadow-utils.
            ("UID_MIN 500\nUID_MIN 1000\n", Some(1000)),
            ("UID_MIN 1000\nUID_MIN lots\n", Some(1000)),
            // strtoul's bases, and quotes.
            ("UID_MIN 0x3e8\n", Some(1000)),
            ("UID_MIN 01750\n", Some(1000)),
            ("UID_MIN \"1000\"\n", Some(1000)),
            ("UID_MIN 0\n", Some(0)),
            // Not numbers, or no value: not set.
            ("UID_MIN\n", None),
            ("UID_MIN lots\n", None),
            ("UID_MIN -1\n", None),
            ("UID_MIN 99999999999\n", None),
            ("UID_MIN 1000abc\n", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(login_defs_value(text, "UID_MIN"), expected, "{text:?}");
        }
    }
}

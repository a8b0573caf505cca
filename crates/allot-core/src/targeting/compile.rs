//! Targeting: compiled form.

use super::*;

/// A targeting expression ready for evaluation: segments inlined, values pre-parsed, constant
/// parts folded. Evaluation cannot fail and does not allocate.
#[derive(Debug, Clone)]
pub struct Compiled {
    root: Node,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Const(bool),
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Crit(Crit),
    /// A segment, compiled once and shared by every expression that uses it (a DAG, not
    /// inlined copies): memory stays linear in the configuration's text.
    Shared(Arc<Node>),
}

#[derive(Debug, Clone)]
pub(super) struct Crit {
    attribute: Box<str>,
    ops: Box<[Op]>,
    /// The result when the attribute is missing: true only if every operator is `exists: false`.
    if_missing: bool,
}

#[derive(Debug, Clone)]
pub(super) enum CScalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

impl CScalar {
    pub(super) fn new(s: &Scalar) -> Self {
        match s {
            Scalar::String(s) => CScalar::Str(s.as_str().into()),
            Scalar::Number(n) => CScalar::Num(number_f64(n)),
            Scalar::Bool(b) => CScalar::Bool(*b),
        }
    }

    #[inline]
    pub(super) fn eq_value(&self, v: &Value) -> bool {
        match (self, v) {
            (CScalar::Str(a), Value::String(b)) => **a == **b,
            (CScalar::Num(a), Value::Number(b)) => *a == number_f64(b),
            (CScalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum StrSet {
    Small(Box<[Box<str>]>),
    Large(HashSet<Box<str>>),
}

#[derive(Debug, Clone)]
pub(super) struct Set {
    strs: StrSet,
    nums: Box<[f64]>,
    has_true: bool,
    has_false: bool,
}

impl Set {
    pub(super) fn new(items: &[Scalar]) -> Self {
        let mut strs: Vec<Box<str>> = Vec::new();
        let mut nums = Vec::new();
        let (mut has_true, mut has_false) = (false, false);
        for item in items {
            match item {
                Scalar::String(s) => {
                    if !strs.iter().any(|x| **x == **s) {
                        strs.push(s.as_str().into());
                    }
                }
                Scalar::Number(n) => nums.push(number_f64(n)),
                Scalar::Bool(true) => has_true = true,
                Scalar::Bool(false) => has_false = true,
            }
        }
        let strs = if strs.len() > SMALL_SET {
            StrSet::Large(strs.into_iter().collect())
        } else {
            StrSet::Small(strs.into_boxed_slice())
        };
        Set { strs, nums: nums.into_boxed_slice(), has_true, has_false }
    }

    #[inline]
    pub(super) fn contains(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => match &self.strs {
                StrSet::Small(items) => items.iter().any(|x| **x == **s),
                StrSet::Large(set) => set.contains(s.as_str()),
            },
            Value::Number(n) => {
                let n = number_f64(n);
                self.nums.contains(&n)
            }
            Value::Bool(true) => self.has_true,
            Value::Bool(false) => self.has_false,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum SemverTest {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Eq(CScalar),
    Ne(CScalar),
    In(Set),
    NotIn(Set),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Semver(SemverTest, Version),
    Before(i128),
    After(i128),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Exists(bool),
    AnyElement(Box<[Op]>),
    AllElements(Box<[Op]>),
}

impl Op {
    pub(super) fn new(op: &Operator) -> Op {
        let ops = |l: &[Operator]| l.iter().map(Op::new).collect();
        match op {
            Operator::Eq(s) => Op::Eq(CScalar::new(s)),
            Operator::Ne(s) => Op::Ne(CScalar::new(s)),
            Operator::In(l) => Op::In(Set::new(l)),
            Operator::NotIn(l) => Op::NotIn(Set::new(l)),
            Operator::Gt(n) => Op::Gt(number_f64(n)),
            Operator::Gte(n) => Op::Gte(number_f64(n)),
            Operator::Lt(n) => Op::Lt(number_f64(n)),
            Operator::Lte(n) => Op::Lte(number_f64(n)),
            Operator::SemverEq(v) => Op::Semver(SemverTest::Eq, v.clone()),
            Operator::SemverGt(v) => Op::Semver(SemverTest::Gt, v.clone()),
            Operator::SemverGte(v) => Op::Semver(SemverTest::Gte, v.clone()),
            Operator::SemverLt(v) => Op::Semver(SemverTest::Lt, v.clone()),
            Operator::SemverLte(v) => Op::Semver(SemverTest::Lte, v.clone()),
            Operator::Before(t) => Op::Before(t.unix_nanos),
            Operator::After(t) => Op::After(t.unix_nanos),
            Operator::StartsWith(s) => Op::StartsWith(s.as_str().into()),
            Operator::EndsWith(s) => Op::EndsWith(s.as_str().into()),
            Operator::Contains(s) => Op::Contains(s.as_str().into()),
            Operator::Exists(b) => Op::Exists(*b),
            Operator::AnyElement(l) => Op::AnyElement(ops(l)),
            Operator::AllElements(l) => Op::AllElements(ops(l)),
        }
    }

    /// Whether the operator holds for a value that may be missing (`None`).
    #[inline]
    pub(super) fn holds(&self, v: Option<&Value>) -> bool {
        match v {
            Some(v) => self.holds_present(v),
            None => matches!(self, Op::Exists(false)),
        }
    }

    /// Whether the operator holds for a present, non-null value.
    #[inline]
    pub(super) fn holds_present(&self, v: &Value) -> bool {
        match self {
            Op::Eq(s) => s.eq_value(v),
            Op::Ne(s) => !s.eq_value(v),
            Op::In(set) => set.contains(v),
            Op::NotIn(set) => !set.contains(v),
            Op::Gt(x) => as_number(v).is_some_and(|n| n > *x),
            Op::Gte(x) => as_number(v).is_some_and(|n| n >= *x),
            Op::Lt(x) => as_number(v).is_some_and(|n| n < *x),
            Op::Lte(x) => as_number(v).is_some_and(|n| n <= *x),
            Op::Semver(test, want) => v.as_str().and_then(parse_version).is_some_and(|have| {
                let ord = have.cmp_precedence(want);
                match test {
                    SemverTest::Eq => ord == Ordering::Equal,
                    SemverTest::Gt => ord == Ordering::Greater,
                    SemverTest::Gte => ord != Ordering::Less,
                    SemverTest::Lt => ord == Ordering::Less,
                    SemverTest::Lte => ord != Ordering::Greater,
                }
            }),
            Op::Before(t) => as_unix_nanos(v).is_some_and(|n| n < *t),
            Op::After(t) => as_unix_nanos(v).is_some_and(|n| n > *t),
            Op::StartsWith(p) => v.as_str().is_some_and(|s| s.starts_with(&**p)),
            Op::EndsWith(p) => v.as_str().is_some_and(|s| s.ends_with(&**p)),
            Op::Contains(p) => v.as_str().is_some_and(|s| s.contains(&**p)),
            Op::Exists(b) => *b,
            Op::AnyElement(ops) => match v {
                Value::Array(items) => items.iter().any(|e| all_hold(ops, element(e))),
                other => all_hold(ops, Some(other)),
            },
            Op::AllElements(ops) => match v {
                Value::Array(items) => !items.is_empty() && items.iter().all(|e| all_hold(ops, element(e))),
                other => all_hold(ops, Some(other)),
            },
        }
    }
}

#[inline]
pub(super) fn element(e: &Value) -> Option<&Value> {
    (!e.is_null()).then_some(e)
}

#[inline]
pub(super) fn all_hold(ops: &[Op], v: Option<&Value>) -> bool {
    ops.iter().all(|op| op.holds(v))
}

impl Node {
    #[inline]
    pub(super) fn eval(&self, ctx: &Context) -> bool {
        match self {
            Node::Crit(c) => match lookup(ctx, &c.attribute) {
                Some(v) => c.ops.iter().all(|op| op.holds_present(v)),
                None => c.if_missing,
            },
            Node::All(cs) => cs.iter().all(|c| c.eval(ctx)),
            Node::Any(cs) => cs.iter().any(|c| c.eval(ctx)),
            Node::Not(c) => !c.eval(ctx),
            Node::Const(b) => *b,
            Node::Shared(n) => n.eval(ctx),
        }
    }

    pub(super) fn collect_attributes(&self, out: &mut Vec<String>) {
        match self {
            Node::Crit(c) => {
                if !out.iter().any(|a| **a == *c.attribute) {
                    out.push(c.attribute.to_string());
                }
            }
            Node::All(cs) | Node::Any(cs) => cs.iter().for_each(|c| c.collect_attributes(out)),
            Node::Not(c) => c.collect_attributes(out),
            Node::Shared(n) => n.collect_attributes(out),
            Node::Const(_) => {}
        }
    }
}

/// Compiled segments by name, shared by the expressions of one compilation.
pub(super) type SegmentMemo<'a> = HashMap<&'a str, Node>;

pub(super) fn compile_node<'a>(
    t: &'a Targeting,
    segments: &'a IndexMap<String, Targeting>,
    stack: &mut Vec<&'a str>,
    memo: &mut SegmentMemo<'a>,
) -> Node {
    match t {
        Targeting::All(cs) => {
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                match compile_node(c, segments, stack, memo) {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::All(inner) => out.extend(inner.into_vec()),
                    n => out.push(n),
                }
            }
            match out.len() {
                0 => Node::Const(true),
                1 => out.pop().unwrap_or(Node::Const(true)),
                _ => Node::All(out.into_boxed_slice()),
            }
        }
        Targeting::Any(cs) => {
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                match compile_node(c, segments, stack, memo) {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Any(inner) => out.extend(inner.into_vec()),
                    n => out.push(n),
                }
            }
            match out.len() {
                0 => Node::Const(false),
                1 => out.pop().unwrap_or(Node::Const(false)),
                _ => Node::Any(out.into_boxed_slice()),
            }
        }
        Targeting::Not(c) => match compile_node(c, segments, stack, memo) {
            Node::Const(b) => Node::Const(!b),
            Node::Not(inner) => *inner,
            n => Node::Not(Box::new(n)),
        },
        Targeting::Segment(name) => {
            // Unknown or cyclic references cannot pass `check_segments`; never match them.
            if stack.contains(&name.as_str()) {
                return Node::Const(false);
            }
            if let Some(n) = memo.get(name.as_str()) {
                return n.clone();
            }
            match segments.get_key_value(name) {
                Some((key, def)) => {
                    stack.push(key);
                    let n = match compile_node(def, segments, stack, memo) {
                        Node::Const(b) => Node::Const(b),
                        Node::Shared(n) => Node::Shared(n),
                        n => Node::Shared(Arc::new(n)),
                    };
                    stack.pop();
                    memo.insert(key, n.clone());
                    n
                }
                None => Node::Const(false),
            }
        }
        Targeting::Criterion(c) => {
            if c.operators.iter().any(|op| matches!(op, Operator::In(l) if l.is_empty())) {
                return Node::Const(false);
            }
            let ops: Box<[Op]> = c.operators.iter().map(Op::new).collect();
            let if_missing = ops.iter().all(|op| matches!(op, Op::Exists(false)));
            Node::Crit(Crit { attribute: c.attribute.as_str().into(), ops, if_missing })
        }
    }
}

/// Compiles many expressions over one set of segments, each segment once: expressions that use
/// the same segment share its compiled form.
#[derive(Debug)]
pub struct Compiler<'a> {
    segments: &'a IndexMap<String, Targeting>,
    memo: SegmentMemo<'a>,
}

impl<'a> Compiler<'a> {
    /// A compiler over `segments`, which should have passed [`check_segments`].
    pub fn new(segments: &'a IndexMap<String, Targeting>) -> Self {
        Compiler { segments, memo: HashMap::new() }
    }

    /// Compiles `t`; see [`Compiled::compile`].
    pub fn compile(&mut self, t: &'a Targeting) -> Compiled {
        Compiled { root: compile_node(t, self.segments, &mut Vec::new(), &mut self.memo) }
    }
}

impl Compiled {
    /// Compiles `t`, inlining `segments`, which should have passed [`check_segments`]: a
    /// reference to an unknown segment, or one closing a cycle, compiles to never-match.
    pub fn compile(t: &Targeting, segments: &IndexMap<String, Targeting>) -> Compiled {
        Compiler::new(segments).compile(t)
    }

    /// An expression that matches every context.
    pub fn always() -> Compiled {
        Compiled { root: Node::Const(true) }
    }

    /// Whether the context matches. Never fails; allocates nothing (save to read a context
    /// version with a pre-release or build label longer than 8 bytes).
    #[inline]
    pub fn matches(&self, ctx: &Context) -> bool {
        self.root.eval(ctx)
    }

    /// The attribute names this expression reads, each once, in order of appearance.
    pub fn attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.collect_attributes(&mut out);
        out
    }
}

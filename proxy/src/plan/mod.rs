//! The planner: everything Orgwall decides about one SQL text — the lexical summary the pooler
//! reads, the analysis policy plugins see, the tenant rewrite and the balance-cache shape —
//! decided once and shared by every session as an [`Arc<Plan>`] from one bounded cache.
//!
//! A plan's facets are computed on first use (an admin's statement never needs a rewrite, a
//! statement with no plugin configured never an analysis) and kept with it. Text with literals
//! (the simple protocol's `… WHERE id = 41`) shares the literal-blind decisions of its shape
//! ([`ShapePlan`]: the shaped rewrite template, the analysis, the recognised balance shape), so
//! such a statement costs a tokenizer pass and string copies, not a parse. Only the first text
//! of a shape is kept by text, so varying literals cannot flood the cache.
//!
//! Invariants: a facet is a pure function of the text (and, for the rewrite, the catalog
//! version, checked on every use); nothing about a tenant is stored — templates are rendered
//! per use. Above `sql`, `policy` and `balances`; below `session`.

mod facets;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::balances::shape::Shape;
use crate::lru::Lru;
use crate::policy::Analysed;
use crate::sql::rewrite::shaped::{literals_of, Shaped};
use crate::sql::rewrite::{Catalog, Refusal, Template};
use crate::sql::shape_key::{fast_key_of, Literal};
use crate::sql::Summary;

/// A rewrite's outcome: the tenant template, or why the statement is refused.
pub type Outcome = Result<Arc<Template>, Refusal>;

/// Everything decided about one SQL text (see the module docs).
pub struct Plan {
    text: Box<str>,
    /// The shape this text shares its literal-blind decisions with, and its literals.
    shape: Option<(Arc<ShapePlan>, Vec<Literal>)>,
    /// Kept in the planner by text (the first text of its shape, or a text without literals).
    cached: bool,
    lexical: OnceLock<Summary>,
    analysis: OnceLock<Result<Arc<Analysed>, crate::policy::Refusal>>,
    /// The rewrite and the catalog version it was made under.
    rewrite: OnceLock<(u64, Outcome)>,
    balance: OnceLock<Option<Arc<Shape>>>,
}

/// The decisions shared by texts that differ only in literal values.
struct ShapePlan {
    key: String,
    /// The template with literal holes (`None`: each text is rewritten itself), and the
    /// catalog version it was made under.
    rewrite: OnceLock<(u64, Option<Arc<Shaped>>)>,
    /// The analysis of the shape's first text; `None` when it depends on a literal (a
    /// literal `LIMIT`), so each text is analysed itself.
    analysis: OnceLock<Option<Arc<Analysed>>>,
    /// The balance shape recognised with literals as parameters from `shaped::BASE`.
    balance: OnceLock<Option<Arc<Shape>>>,
}

/// How the planner's rewrite lookups went since start (`/metrics`, the admin console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    /// Answered by a plan that already held its rewrite.
    pub hits: u64,
    /// Answered from the shape's template with the text's literals put back.
    pub shape_hits: u64,
    /// Rewritten afresh.
    pub misses: u64,
    /// Texts held now.
    pub entries: usize,
}

/// Shared by all sessions; every method takes `&self`.
pub struct Planner {
    texts: Lru<Arc<Plan>>,
    shapes: Lru<Arc<ShapePlan>>,
    /// Where `inventory_balances` lives, when the balance cache is on.
    balance_schema: Option<String>,
    hits: AtomicU64,
    shape_hits: AtomicU64,
    misses: AtomicU64,
}

impl Planner {
    /// A planner keeping at most `capacity` texts and as many shapes; `balance_schema` when
    /// the balance cache is on.
    pub fn new(capacity: usize, balance_schema: Option<String>) -> Planner {
        Planner {
            texts: Lru::new(capacity),
            shapes: Lru::new(capacity),
            balance_schema,
            hits: AtomicU64::new(0),
            shape_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The plan of `text`: the one kept for it, else one sharing its shape's decisions, else
    /// a new one.
    pub fn plan(&self, text: &str) -> Arc<Plan> {
        match self.texts.get(text) {
            Some(hit) => hit,
            None => self.fresh(text),
        }
    }

    /// A new plan for `text`, sharing its shape's decisions (and kept by text when it is the
    /// shape's first text, or has no literals).
    fn fresh(&self, text: &str) -> Arc<Plan> {
        let shape = literals_of(text).map(|literals| {
            let key = fast_key_of(text, &literals);
            match self.shapes.get(&key) {
                Some(s) => (s, literals, false),
                None => {
                    let s = Arc::new(ShapePlan::new(key));
                    self.shapes.insert(&s.key, s.clone());
                    (s, literals, true)
                }
            }
        });
        // A text is kept when it is its shape's first, or has no shape: prepared statements
        // and repeated texts hit by text, new literals by shape.
        let cached = shape.as_ref().is_none_or(|(_, _, new)| *new);
        let plan = Arc::new(Plan {
            text: text.into(),
            shape: shape.map(|(s, l, _)| (s, l)),
            cached,
            lexical: OnceLock::new(),
            analysis: OnceLock::new(),
            rewrite: OnceLock::new(),
            balance: OnceLock::new(),
        });
        if cached {
            self.texts.insert(text, plan.clone());
        }
        plan
    }

    /// `text`'s tenant rewrite under `catalog` (the plan and its rewrite, in one call).
    pub fn get_or_rewrite(&self, text: &str, catalog: &Catalog) -> Outcome {
        self.rewrite(&self.plan(text), catalog)
    }

    /// Lookups since start and texts held now.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            shape_hits: self.shape_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.texts.len(),
        }
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Plan {
    /// The SQL text this plan is for.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The lexical summary (`sql::summarize`): what the pooler reads from text it does not
    /// rewrite (admin statements, and the batch check that precedes any parse).
    pub fn lexical(&self) -> &Summary {
        self.lexical
            .get_or_init(|| crate::sql::summarize(&self.text))
    }
}

impl ShapePlan {
    fn new(key: String) -> ShapePlan {
        ShapePlan {
            key,
            rewrite: OnceLock::new(),
            analysis: OnceLock::new(),
            balance: OnceLock::new(),
        }
    }
}

//! The plan's facets that need more than the text: the tenant rewrite (the catalog, checked
//! against the version it was made under), the policy analysis and the balance shape (the
//! schema of `inventory_balances`), each computed once per plan or per shape.

use std::sync::Arc;

use super::{Outcome, Plan, Planner, ShapePlan};
use crate::balances::shape::{recognise, recognise_from, Shape};
use crate::policy::{Analysed, Refusal};
use crate::sql::rewrite::shaped::{parametrize, shape, BASE};
use crate::sql::rewrite::{rewrite, Catalog};

impl Planner {
    /// The plan's tenant rewrite under `catalog`: kept with the plan, else the shape's
    /// template with the text's literals put back, else a fresh rewrite.
    pub fn rewrite(&self, plan: &Arc<Plan>, catalog: &Catalog) -> Outcome {
        let version = catalog.version();
        if let Some((v, outcome)) = plan.rewrite.get() {
            if *v == version {
                self.count(&self.hits);
                return outcome.clone();
            }
            // The catalog changed since: plan the text afresh.
            return self.rewrite(&self.replan(plan), catalog);
        }
        let outcome = self.rewrite_fresh(plan, catalog);
        // (A plan raced by another session keeps the first rewrite; both are equal.)
        let _ = plan.rewrite.set((version, outcome.clone()));
        outcome
    }

    fn rewrite_fresh(&self, plan: &Arc<Plan>, catalog: &Catalog) -> Outcome {
        let version = catalog.version();
        if let Some((s, literals)) = &plan.shape {
            let shaped = match s.rewrite.get() {
                Some((v, shaped)) if *v == version => {
                    if shaped.is_some() {
                        self.count(&self.shape_hits);
                    }
                    shaped.clone()
                }
                Some(_) => {
                    // Made under an older catalog: later texts of the shape start afresh.
                    self.shapes
                        .insert(&s.key, Arc::new(ShapePlan::new(s.key.clone())));
                    None
                }
                None => {
                    let shaped = shape(plan.text(), literals, catalog).map(Arc::new);
                    let _ = s.rewrite.set((version, shaped.clone()));
                    if shaped.is_some() {
                        self.count(&self.misses);
                    }
                    shaped
                }
            };
            if let Some(shaped) = shaped {
                return Ok(Arc::new(shaped.instantiate(plan.text(), literals)));
            }
        }
        self.count(&self.misses);
        if !plan.cached {
            // Not shaped (a literal tenant value, or a form the rewriter refuses with
            // parameters): the text's own rewrite is kept by text, for when it repeats.
            self.texts.insert(plan.text(), plan.clone());
        }
        rewrite(plan.text(), catalog).map(Arc::new)
    }

    /// A new plan for `old`'s text (its rewrite was made under an older catalog), kept in
    /// its place.
    fn replan(&self, old: &Plan) -> Arc<Plan> {
        if let Some((s, _)) = &old.shape {
            if s.rewrite.get().is_some() {
                self.shapes
                    .insert(&s.key, Arc::new(ShapePlan::new(s.key.clone())));
            }
        }
        let fresh = self.fresh(old.text());
        self.texts.insert(old.text(), fresh.clone());
        fresh
    }

    /// The balance-cache shape of the plan's text, when the cache is on and recognises it.
    pub fn balance(&self, plan: &Plan) -> Option<Arc<Shape>> {
        let schema = self.balance_schema.as_deref()?;
        plan.balance
            .get_or_init(|| {
                let text = plan.text();
                if !crate::balances::names_balances(text) {
                    return None;
                }
                match &plan.shape {
                    Some((s, literals)) => s
                        .balance
                        .get_or_init(|| {
                            recognise_from(&parametrize(text, literals), schema, BASE).map(Arc::new)
                        })
                        .as_ref()?
                        .with_literals(BASE, text, literals)
                        .map(Arc::new),
                    None => recognise(text, schema).map(Arc::new),
                }
            })
            .clone()
    }
}

impl Plan {
    /// The analysis policy plugins see (refused when the text does not parse): the shape's
    /// when it does not depend on a literal, else the text's own.
    pub fn analysis(&self) -> Result<Arc<Analysed>, Refusal> {
        self.analysis
            .get_or_init(|| {
                let shape = self.shape.as_ref().map(|(s, _)| s);
                if let Some(Some(a)) = shape.and_then(|s| s.analysis.get()) {
                    return Ok(a.clone());
                }
                let a = crate::policy::analyse(self.text())?;
                if let Some(s) = shape {
                    let _ = s.analysis.set((!a.literal_limit()).then(|| a.clone()));
                }
                Ok(a)
            })
            .clone()
    }
}

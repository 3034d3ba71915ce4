//! Run search: a filter syntax tree and orderings turned into one
//! parameterised query. Keys and values only ever travel as bind
//! parameters.

use super::runs::RunSummary;
use super::{Result, Store};
use kiln_types::filter::{ATTRIBUTES, Entity, Filter, Op, OrderBy, Value};
use sqlx::{AssertSqlSafe, Row};

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Experiment names; empty means all.
    pub experiments: Vec<String>,
    /// Experiment ids (the MLflow API names experiments by id); empty means all.
    pub experiment_ids: Vec<String>,
    pub filter: Option<Filter>,
    pub order_by: Vec<OrderBy>,
    pub max_results: i64,
    pub offset: i64,
}

enum Arg {
    Text(String),
    Num(f64),
    Int(i64),
}

#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn value(&mut self, v: &Value) -> String {
        match v {
            Value::Number(n) => self.arg(Arg::Num(*n)),
            Value::Text(s) => self.arg(Arg::Text(s.clone())),
            Value::List(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.value(i)).collect();
                format!("({})", parts.join(", "))
            }
        }
    }

    fn filter(&mut self, f: &Filter) {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                let joiner = if matches!(f, Filter::And(..)) { " AND " } else { " OR " };
                self.text.push('(');
                self.filter(a);
                self.text.push_str(joiner);
                self.filter(b);
                self.text.push(')');
            }
            Filter::Compare { entity, key, op, value } => {
                let compare = |sql: &mut Sql, column: &str| {
                    let rhs = sql.value(value);
                    match op {
                        Op::ILike => format!("LOWER({column}) LIKE LOWER({rhs})"),
                        _ => format!("{column} {} {rhs}", op_sql(*op)),
                    }
                };
                let clause = match entity {
                    Entity::Metric => {
                        let k = self.arg(Arg::Text(key.clone()));
                        let cmp = compare(self, "m.value");
                        format!("EXISTS (SELECT 1 FROM latest_metrics m WHERE m.run_id = r.id AND m.key = {k} AND m.is_nan = 0 AND {cmp})")
                    }
                    Entity::Param | Entity::Tag => {
                        let table = if *entity == Entity::Param { "params" } else { "tags" };
                        let k = self.arg(Arg::Text(key.clone()));
                        let cmp = compare(self, "x.value");
                        format!("EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.key = {k} AND {cmp})")
                    }
                    Entity::Attribute => compare(self, attribute_column(key)),
                };
                self.text.push_str(&clause);
            }
        }
    }
}

/// A filter operator in SQL (ILIKE is LIKE over lowered sides).
fn op_sql(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Like | Op::ILike => "LIKE",
        Op::In => "IN",
        Op::NotIn => "NOT IN",
    }
}

fn attribute_column(key: &str) -> &'static str {
    match key {
        "status" => "r.status",
        "run_name" => "r.name",
        "run_id" => "r.id",
        "start_time" => "r.start_time",
        "end_time" => "r.end_time",
        _ => "e.name",
    }
}

impl SearchQuery {
    /// The query selecting `columns` of the matching runs (`r` is the run,
    /// `e` its experiment), one page of it plus one row to tell whether
    /// another page follows.
    fn sql(&self, columns: &str) -> Sql {
        let q = self;
        let mut sql = Sql::default();
        sql.text.push_str(&format!("SELECT {columns} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.lifecycle_stage = 'active'"));
        if !q.experiments.is_empty() {
            let names: Vec<String> = q.experiments.iter().map(|n| sql.arg(Arg::Text(n.clone()))).collect();
            sql.text.push_str(&format!(" AND e.name IN ({})", names.join(", ")));
        }
        if !q.experiment_ids.is_empty() {
            let ids: Vec<String> = q.experiment_ids.iter().map(|n| sql.arg(Arg::Text(n.clone()))).collect();
            sql.text.push_str(&format!(" AND e.id IN ({})", ids.join(", ")));
        }
        if let Some(f) = &q.filter {
            sql.text.push_str(" AND ");
            sql.filter(f);
        }
        let mut order = Vec::new();
        for o in &q.order_by {
            let dir = if o.descending { "DESC" } else { "ASC" };
            let expr = match o.entity {
                Entity::Metric => {
                    let k = sql.arg(Arg::Text(o.key.clone()));
                    format!("(SELECT m.value FROM latest_metrics m WHERE m.run_id = r.id AND m.key = {k} AND m.is_nan = 0)")
                }
                Entity::Param | Entity::Tag => {
                    let table = if o.entity == Entity::Param { "params" } else { "tags" };
                    let k = sql.arg(Arg::Text(o.key.clone()));
                    format!("(SELECT x.value FROM {table} x WHERE x.run_id = r.id AND x.key = {k})")
                }
                Entity::Attribute => {
                    debug_assert!(ATTRIBUTES.iter().any(|(a, _)| *a == o.key));
                    attribute_column(&o.key).to_string()
                }
            };
            // Runs without the metric or param sort last either way.
            order.push(format!("{expr} {dir} NULLS LAST"));
        }
        order.push("r.start_time DESC".into());
        order.push("r.id".into());
        sql.text.push_str(&format!(" ORDER BY {}", order.join(", ")));
        let limit = sql.arg(Arg::Int(q.max_results + 1));
        let offset = sql.arg(Arg::Int(q.offset));
        sql.text.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
        sql
    }

    /// Cut the extra row off a page; the offset of the next page if it was there.
    fn page<T>(&self, rows: &mut Vec<T>) -> Option<i64> {
        if rows.len() as i64 > self.max_results {
            rows.truncate(self.max_results as usize);
            Some(self.offset + self.max_results)
        } else {
            None
        }
    }
}

impl Sql {
    fn query(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text));
        for a in self.args {
            query = match a {
                Arg::Text(s) => query.bind(s),
                Arg::Num(n) => query.bind(n),
                Arg::Int(i) => query.bind(i),
            };
        }
        query
    }
}

impl Store {
    /// Runs matching `q`, and the offset of the next page if there is one.
    pub async fn search_runs(&self, q: &SearchQuery) -> Result<(Vec<RunSummary>, Option<i64>)> {
        let sql = q.sql("r.id, e.name AS experiment, r.name, r.status, r.start_time, r.end_time, r.source, r.parent_run_id");
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut runs: Vec<RunSummary> = rows.iter().map(super::runs::summary_from_row).collect::<Result<_>>()?;
        let next = q.page(&mut runs);
        self.fill_params_and_metrics(&mut runs).await?;
        Ok((runs, next))
    }

    /// The ids of the runs matching `q`, in order, and the offset of the
    /// next page if there is one (for callers that read the runs their own way).
    pub async fn search_run_ids(&self, q: &SearchQuery) -> Result<(Vec<String>, Option<i64>)> {
        let rows = q.sql("r.id").query().fetch_all(&self.pool).await?;
        let mut ids: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        let next = q.page(&mut ids);
        Ok((ids, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_backends;
    use crate::{MetricPoint, NewRun, RunStatus};
    use kiln_types::filter;

    async fn seed(store: &Store) -> Vec<String> {
        let mut ids = Vec::new();
        for (i, (model, acc, team)) in
            [("forest", 0.95, "ml-core"), ("linear", 0.91, "ml-edge"), ("forest", 0.80, "data"), ("knn", f64::NAN, "ml-core")].into_iter().enumerate()
        {
            let id = store
                .create_run(NewRun {
                    experiment: if i < 3 { "e1".into() } else { "e2".into() },
                    name: format!("run{i}"),
                    parent: None,
                    source: "t".into(),
                })
                .await
                .unwrap();
            store.log_params(&id, &[("model".into(), model.into()), ("learning rate".into(), format!("0.{i}"))]).await.unwrap();
            store.log_metrics(&id, &[MetricPoint { key: "accuracy".into(), value: acc, step: 0, timestamp: 1 }]).await.unwrap();
            store.set_tags(&id, &[("team".into(), team.into())]).await.unwrap();
            store.finish_run(&id, if i == 2 { RunStatus::Failed } else { RunStatus::Finished }, None).await.unwrap();
            ids.push(id);
        }
        ids
    }

    async fn names(store: &Store, f: &str, order: &[&str]) -> Vec<String> {
        let q = SearchQuery {
            filter: filter::parse(f).unwrap(),
            order_by: order.iter().map(|o| filter::parse_order_by(o).unwrap()).collect(),
            max_results: 100,
            ..Default::default()
        };
        store.search_runs(&q).await.unwrap().0.into_iter().map(|r| r.name).collect()
    }

    both_backends!(filters_orderings_and_pages, |store| {
        seed(&store).await;
        assert_eq!(names(&store, "metrics.accuracy > 0.9", &["metrics.accuracy DESC"]).await, ["run0", "run1"]);
        assert_eq!(names(&store, "params.model = 'forest' and attributes.status = 'FINISHED'", &[]).await, ["run0"]);
        assert_eq!(
            names(&store, "tags.team LIKE 'ml%' or metrics.accuracy < 0.85", &["attributes.run_name"]).await,
            ["run0", "run1", "run2", "run3"]
        );
        assert_eq!(names(&store, "tags.team ILIKE 'ML-CORE'", &["attributes.run_name DESC"]).await, ["run3", "run0"]);
        assert_eq!(names(&store, "params.`learning rate` IN ('0.1', '0.2')", &["attributes.run_name"]).await, ["run1", "run2"]);
        assert_eq!(names(&store, "params.model NOT IN ('forest')", &["attributes.run_name"]).await, ["run1", "run3"]);
        assert_eq!(names(&store, "attributes.experiment = 'e2'", &[]).await, ["run3"]);
        // NaN metrics never match a comparison and sort last.
        assert_eq!(names(&store, "", &["metrics.accuracy ASC"]).await, ["run2", "run1", "run0", "run3"]);
        let q = SearchQuery { max_results: 3, order_by: vec![filter::parse_order_by("attributes.run_name").unwrap()], ..Default::default() };
        let (page, next) = store.search_runs(&q).await.unwrap();
        assert_eq!((page.len(), next), (3, Some(3)));
        let (rest, next) = store.search_runs(&SearchQuery { offset: 3, ..q.clone() }).await.unwrap();
        assert_eq!((rest.len(), next), (1, None));
        assert_eq!(rest[0].name, "run3");
        // Hostile text stays a value.
        assert!(names(&store, "params.model = 'x'' OR 1=1 --'", &[]).await.is_empty());
    });
}

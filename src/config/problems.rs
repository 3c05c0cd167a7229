//! The collector that config validators record their problems in, so that each check is one
//! call and `check-config` can report every problem at once, in the order the checks ran.

use super::ConfigProblem;

/// Problems found so far, in the order found: tests and operators read them in that order.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Records `message` at `path` unless `ok`.
    pub fn check(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.push(path, message);
        }
    }

    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

/// For the problems of a sub-table's own validator, which returns them whole.
impl Extend<ConfigProblem> for Problems {
    fn extend<I: IntoIterator<Item = ConfigProblem>>(&mut self, problems: I) {
        self.0.extend(problems);
    }
}

//! Scenario scripts: time-stamped control commands for repeatable runs.
//!
//! One step per line: seconds since the simulator started, then a control
//! command ([`crate::control`]). `#` starts a comment; blank lines are skipped.
//! Steps run in time order.
//!
//! ```text
//! # the inverter falls asleep for 15 s while the house exports
//! 10.0 fault growatt silent on
//! 25.0 set sdm230 power -1500
//! 25.0 fault growatt silent off
//! ```

/// One scheduled command.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Seconds after start.
    pub at_s: f64,
    /// The control command.
    pub command: String,
    /// Line number in the file, for error messages.
    pub line: usize,
}

/// A parsed scenario.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    /// Steps sorted by time.
    pub steps: Vec<Step>,
}

impl Script {
    /// Parses script text; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Script, String> {
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (time, command) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let at_s = time
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| format!("line {}: expected seconds then a command, got {raw:?}", i + 1))?;
            let command = command.trim();
            if command.is_empty() {
                return Err(format!("line {}: no command after the time", i + 1));
            }
            steps.push(Step { at_s, command: command.to_string(), line: i + 1 });
        }
        steps.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Ok(Script { steps })
    }

    /// Reads and parses a script file.
    pub fn load(path: &std::path::Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read script {}: {e}", path.display()))?;
        Script::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_script() {
        let s = Script::parse("# c\n25.0 set sdm230 power -1500\n\n10 fault growatt silent on  # asleep\n");
        let s = s.unwrap_or_default();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].at_s, 10.0);
        assert_eq!(s.steps[0].command, "fault growatt silent on");
        assert_eq!(s.steps[1].line, 2);
        assert!(Script::parse("x fault").is_err());
        assert!(Script::parse("3.0").is_err());
    }
}

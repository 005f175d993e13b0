//! Prometheus text exposition (version 0.0.4) for `/metrics`: a small writer, no registry. Each
//! role writes its own figures (`controller::metrics`, `speaker::metrics`), read from the same
//! counters the JSON status shows.

use std::fmt::Write;

/// Builds one exposition document.
#[derive(Default)]
pub(crate) struct Metrics {
    out: String,
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// One sample.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.out, " {value}");
        } else {
            let _ = writeln!(self.out, " NaN");
        }
    }

    /// The HELP and TYPE lines of a metric (the help on one line: it may come from a doc
    /// comment of several).
    pub(crate) fn header(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter (`name` should end in `_total`).
    pub(crate) fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        self.sample(name, &[], value as f64);
    }

    /// A gauge.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, &[], value);
    }

    /// Gauges from a table of (name, help, value).
    pub(crate) fn gauge_table(&mut self, table: &[(&str, &str, f64)]) {
        for &(name, help, v) in table {
            self.gauge(name, help, v);
        }
    }

    /// A gauge with one sample per label set.
    pub(crate) fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.header(name, help, "gauge");
        for (labels, v) in samples {
            self.sample(name, &labels, v);
        }
    }

    /// The process's CPU time and resident memory.
    pub(crate) fn process(&mut self) {
        // SAFETY: getrusage fills the struct it is given; all-zero is a valid value for it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a live, exclusively borrowed rusage for the call to fill.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            let name = "process_cpu_seconds_total";
            self.header(name, "User and system CPU time of this process.", "counter");
            self.sample(name, &[], secs(u.ru_utime) + secs(u.ru_stime));
        }
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            });
        if let Some(kib) = rss_kib {
            self.gauge(
                "process_resident_memory_bytes",
                "Resident memory of this process.",
                kib * 1024.0,
            );
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut m = Metrics::default();
        m.counter("chorus_x_total", "Things.", 3);
        m.gauges(
            "chorus_y",
            "Per speaker.",
            [(vec![("speaker", "a \"b\"\\c")], 1.5), (vec![], f64::NAN)],
        );
        let text = m.finish();
        assert_eq!(
            text,
            "# HELP chorus_x_total Things.\n# TYPE chorus_x_total counter\nchorus_x_total 3\n\
             # HELP chorus_y Per speaker.\n# TYPE chorus_y gauge\n\
             chorus_y{speaker=\"a \\\"b\\\"\\\\c\"} 1.5\nchorus_y NaN\n"
        );
    }
}

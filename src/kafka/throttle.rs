//! A produce request Kafka throttled is not sent twice.
//!
//! A broker enforcing a quota (`producer_byte_rate`, `request_percentage`) writes the batch,
//! then answers with `throttle_time_ms` > 0 and holds the connection for that long. rskafka
//! 0.6 reads any throttle time as "not done": it sleeps for it and sends the same request
//! again, inside `PartitionClient::produce`, whatever the worker's retry settings. Every
//! throttled batch was written twice (11,500 duplicates of 15,300 lines on Apache Kafka 4.1
//! with a 1 MB/s quota), and rskafka offers no hook to stop it.
//!
//! What it does offer is the event it logs just before that sleep (target `rskafka::backoff`,
//! `broker asked us to throttle`, with the request's name and the pause). [`layer`] is a
//! tracing layer with a filter of its own, so that the event reaches it whatever `RUST_LOG`
//! says; it hands the pause to the produce call the event happened in, through a task-local
//! slot that [`watch`] sets around the call. [`watch`] then ends the call there, while rskafka
//! sleeps and before it resends, and returns the pause: the worker waits as long as the broker
//! asked and looks for the batch in its partition (it was written unless the answer carried an
//! error as well), exactly as for a batch whose answer was lost.
//!
//! Without the layer installed (a library user with a subscriber of its own) the resend
//! happens as before: duplicates, never a loss.

use std::cell::Cell;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The event's target and message in rskafka 0.6 (`src/backoff.rs`).
const TARGET: &str = "rskafka::backoff";
const MESSAGE: &str = "broker asked us to throttle";
/// The pause assumed when the event's own cannot be read (a format rskafka may change).
const UNREADABLE: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// The pause Kafka asked for during the produce call being polled.
    static THROTTLED: Cell<Option<Duration>>;
}

/// The layer to add to the process's subscriber; it logs nothing.
pub fn layer<S: Subscriber + for<'a> LookupSpan<'a>>() -> impl Layer<S> {
    Watcher.with_filter(Targets::new().with_target(TARGET, Level::INFO))
}

struct Watcher;

impl<S: Subscriber> Layer<S> for Watcher {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut seen = Seen::default();
        event.record(&mut seen);
        if seen.message.as_deref() == Some(MESSAGE) && seen.request.as_deref() == Some("produce") {
            let pause = seen.throttle.as_deref().and_then(parse_debug_duration).unwrap_or(UNREADABLE);
            // Outside a watched call (no slot) there is nothing to stop.
            let _ = THROTTLED.try_with(|slot| slot.set(Some(pause)));
        }
    }
}

#[derive(Default)]
struct Seen {
    message: Option<String>,
    request: Option<String>,
    throttle: Option<String>,
}

impl Visit for Seen {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_name" {
            self.request = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = Some(text),
            "throttle" => self.throttle = Some(text),
            "request_name" => self.request = Some(text.trim_matches('"').to_owned()),
            _ => {}
        }
    }
}

/// `Duration`'s `Debug` form back: `1.5s`, `250ms`, `10µs`, `7ns`.
fn parse_debug_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" | "us" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Runs a produce call; ends it with `Err(pause)` as soon as Kafka throttled it (the request
/// was answered; rskafka would send it again after the pause).
pub async fn watch<F: Future>(call: F) -> Result<F::Output, Duration> {
    THROTTLED
        .scope(Cell::new(None), async move {
            let mut call = std::pin::pin!(call);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(out) = call.as_mut().poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                match THROTTLED.with(Cell::take) {
                    Some(pause) => Poll::Ready(Err(pause)),
                    None => Poll::Pending,
                }
            })
            .await
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// The event this layer watches for is still the one rskafka emits: its message, in
    /// its module (`TARGET`), with the request's name in the field read here.
    #[test]
    fn rskafka_still_emits_the_event_watched_for() {
        let source = crate::testutil::rskafka_source("backoff.rs");
        assert_eq!(TARGET, "rskafka::backoff", "the module whose source is read");
        let line = source.lines().find(|l| l.contains(MESSAGE)).expect("rskafka's throttle event");
        assert!(line.contains("request_name") && line.contains("throttle"), "{line}");
    }

    #[test]
    fn durations_read_back_from_their_debug_form() {
        for d in [
            Duration::from_secs(2),
            Duration::from_millis(1500),
            Duration::from_millis(250),
            Duration::from_micros(10),
            Duration::from_nanos(7),
            Duration::ZERO,
        ] {
            let back = parse_debug_duration(&format!("{d:?}")).unwrap();
            assert!(back.abs_diff(d) < Duration::from_nanos(2), "{d:?} -> {back:?}");
        }
        assert_eq!(parse_debug_duration("soon"), None);
        assert_eq!(parse_debug_duration("5 parsecs"), None);
    }

    /// A call that logs rskafka's event (as rskafka does before its resend) and then
    /// sleeps, as rskafka does.
    async fn throttled_call(request: &'static str, pause: Duration) -> &'static str {
        tracing::info!(target: "rskafka::backoff", throttle = ?pause, request_name = request, "broker asked us to throttle");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "sent again"
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_produce_ends_before_the_resend_with_the_pause() {
        // RUST_LOG-like filter that drops rskafka's info events: the layer still sees them.
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_filter(Targets::new().with_default(Level::WARN)))
            .with(layer());
        let _guard = tracing::subscriber::set_default(subscriber);
        let pause = Duration::from_millis(1234);
        assert_eq!(watch(throttled_call("produce", pause)).await, Err(pause));
        // Another request's throttle is not ours to stop; a call without the event ends itself.
        let other = tokio::time::timeout(Duration::from_secs(10), watch(throttled_call("fetch", pause))).await;
        assert!(other.is_err(), "a fetch's throttle is left to rskafka");
        assert_eq!(watch(async { 5 }).await, Ok(5));
        // The event outside a watched call changes nothing.
        tracing::info!(target: "rskafka::backoff", throttle = ?pause, request_name = "produce", "broker asked us to throttle");
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_layer_the_call_runs_on() {
        let pause = Duration::from_millis(10);
        let call = tokio::time::timeout(Duration::from_secs(10), watch(throttled_call("produce", pause))).await;
        assert!(call.is_err(), "nothing watches: rskafka's own resend goes ahead");
    }
}

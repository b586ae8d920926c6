//! Every RPC gets a deadline: the caller's (`grpc-timeout`) or the service's
//! default, whichever is shorter. Past it the call ends DEADLINE_EXCEEDED.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::MetadataMap;

use super::ApiError;

/// Parses a `grpc-timeout` header value ("100m", "30S", ...), if well formed.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    // The gRPC spec allows at most 8 digits.
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3_600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs `call` within the shorter of the caller's deadline and `default`.
pub async fn within<T>(
    metadata: &MetadataMap,
    default: Duration,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let limit = grpc_timeout(metadata).map_or(default, |caller| caller.min(default));
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(ApiError::DeadlineExceeded(format!("no answer within {limit:?}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", value.parse().unwrap());
        m
    }

    #[test]
    fn parses_every_unit_and_refuses_malformed_values() {
        assert_eq!(grpc_timeout(&header("100m")), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(&header("2S")), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout(&header("1H")), Some(Duration::from_secs(3_600)));
        assert_eq!(grpc_timeout(&header("5u")), Some(Duration::from_micros(5)));
        for bad in ["", "m", "10", "10x", "123456789S", "-1S"] {
            assert_eq!(grpc_timeout(&header(bad)), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[tokio::test]
    async fn the_shorter_deadline_wins() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let started = std::time::Instant::now();
        let r = within(&header("50m"), Duration::from_secs(10), slow).await;
        assert!(matches!(r, Err(ApiError::DeadlineExceeded(_))));
        assert!(started.elapsed() < Duration::from_secs(1));
        let fast = within(&MetadataMap::new(), Duration::from_millis(50), async { Ok(7) }).await;
        assert_eq!(fast.unwrap(), 7);
    }
}

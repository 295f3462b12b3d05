//! Name resolution for upstream connections, with pins (`resolve = ["host=ip"]`).
//!
//! In DNS mode the site's DNS answers registry.ollama.ai with this very box; without a pin
//! shoal's own fetches would loop back to itself. A pinned name never reaches DNS.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

type Addrs = std::vec::IntoIter<SocketAddr>;

#[derive(Clone)]
pub struct PinnedResolver {
    /// Lowercase host → address; port 0 means "the URL's port".
    pins: Arc<HashMap<String, SocketAddr>>,
    system: GaiResolver,
}

impl PinnedResolver {
    pub fn new(pins: HashMap<String, SocketAddr>) -> PinnedResolver {
        PinnedResolver {
            pins: Arc::new(pins),
            system: GaiResolver::new(),
        }
    }
}

impl tower::Service<Name> for PinnedResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        if let Some(addr) = self.pins.get(&host) {
            let addr = *addr;
            tracing::debug!(%host, %addr, "pinned upstream address");
            return Box::pin(async move { Ok(vec![addr].into_iter()) });
        }
        let mut system = self.system.clone();
        Box::pin(async move {
            let addrs = tower::Service::call(&mut system, name).await?;
            Ok(addrs.collect::<Vec<_>>().into_iter())
        })
    }
}

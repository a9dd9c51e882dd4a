//! Watching that something never happens while a test acts: the pods matching a
//! selector, sampled every so often in a task of their own, and the most that
//! were counted at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::task::JoinHandle;

/// Samples the pods matching a selector until [`PodSampler::stop`].
pub struct PodSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// What a [`PodSampler`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampled {
    /// How many samples were taken.
    pub samples: usize,
    /// The most `count` returned for one sample.
    pub most: usize,
}

impl PodSampler {
    /// Lists the pods matching `selector` every `every` and calls `count` with
    /// them (it may note more, such as when a pod went).
    pub fn start(
        pods: Api<Pod>,
        selector: ListParams,
        every: Duration,
        mut count: impl FnMut(&[Pod]) -> usize + Send + 'static,
    ) -> PodSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, samples, most) = (stop.clone(), samples.clone(), most.clone());
            async move {
                // One last sample after the stop, so the end state is seen too.
                loop {
                    let stopping = stop.load(Ordering::SeqCst);
                    let list = pods
                        .list(&selector)
                        .await
                        .unwrap_or_else(|e| panic!("sampling the pods: {e}"));
                    most.fetch_max(count(&list.items), Ordering::SeqCst);
                    samples.fetch_add(1, Ordering::SeqCst);
                    if stopping {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }
        });
        PodSampler {
            stop,
            samples,
            most,
            task,
        }
    }

    /// Takes one last sample and stops.
    ///
    /// # Panics
    /// When a sample could not be taken.
    pub async fn stop(self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.task.await {
            std::panic::resume_unwind(e.into_panic());
        }
        Sampled {
            samples: self.samples.load(Ordering::SeqCst),
            most: self.most.load(Ordering::SeqCst),
        }
    }
}

// A tiny asset so the demo has something long-lived to cache.
document.documentElement.dataset.servedBy = "edgeproxy";

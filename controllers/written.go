package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// writtenStatuses remembers, per resource, the status this reconciler last wrote and the
// resourceVersion of the object it was computed from. While the cache still holds that
// version, it has not seen the write, and the write's result is the status to compare
// with: without this, the reconcile that a child's watch event queues during the first one
// writes the same status again (with new condition transition times) on every create.
type writtenStatuses struct {
	mu    sync.Mutex
	m     map[types.NamespacedName]writtenStatus
	swept time.Time
}

type writtenStatus struct {
	uid    types.UID
	fromRV string
	status *cbv1.CallbackReceiverStatus
	at     time.Time
}

// writtenTTL bounds how long a record is kept for a resource that is not reconciled again:
// by then the cache has long seen the write.
const writtenTTL = time.Minute

// wrote records a successful status write: cr is the object as the API server returned it,
// fromRV the resourceVersion of the cached object the write was computed from.
func (w *writtenStatuses) wrote(key types.NamespacedName, fromRV string, cr *cbv1.CallbackReceiver) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[types.NamespacedName]writtenStatus{}
	}
	now := time.Now()
	w.m[key] = writtenStatus{uid: cr.UID, fromRV: fromRV, status: cr.Status.DeepCopy(), at: now}
	if now.Sub(w.swept) > writtenTTL {
		for k, ws := range w.m {
			if now.Sub(ws.at) > writtenTTL {
				delete(w.m, k)
			}
		}
		w.swept = now
	}
}

func (w *writtenStatuses) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// overlay replaces cr's status with the last one written when cr, read from the cache, is
// the very version that write was computed from. The fields the counts scraper owns stay as
// cached. Once the cache has moved on, the record is dropped.
func (w *writtenStatuses) overlay(key types.NamespacedName, cr *cbv1.CallbackReceiver) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws, ok := w.m[key]
	if !ok {
		return
	}
	if ws.uid != cr.UID || ws.fromRV != cr.ResourceVersion {
		delete(w.m, key)
		return
	}
	st := ws.status.DeepCopy()
	st.Counts, st.Incarnations = cr.Status.Counts, cr.Status.Incarnations
	cr.Status = *st
}

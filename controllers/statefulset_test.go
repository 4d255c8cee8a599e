package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/resources"
)

// envtest runs no StatefulSet, Job or volume controllers: these tests play their part
// (claims, status, Job completion) and check what the operator does with it.

// onClaims is the fixture with the default spool: a claim per pod, on a StatefulSet.
func onClaims(cr *cbv1.CallbackReceiver) { cr.Spec.Spool = nil }

// onStaticClaims is on claims of the empty class (static provisioning), which needs no
// StorageClass: whether a default one exists does not matter.
func onStaticClaims(cr *cbv1.CallbackReceiver) {
	cr.Spec.Spool = &cbv1.SpoolSpec{StorageClassName: ptr.To("")}
}

// TestNoDefaultStorageClass: without a default StorageClass the resource says so (not
// Ready, what to set); with one, SpoolReady turns True. Only this test makes a default class.
func TestNoDefaultStorageClass(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, onClaims)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		c := condition(got, cbv1.ConditionSpoolReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonNoDefaultStorageClass))
		g.Expect(c.Message).To(And(ContainSubstring("storageClassName"), ContainSubstring("type: EmptyDir")))
		g.Expect(condition(got, cbv1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(got.Finalizers).To(ContainElement(controllers.SpoolFinalizer))
	}).Should(Succeed())
	// The StatefulSet is there all the same: its claims bind once a default class exists.
	s := get(g, ns, cr.Name, &appsv1.StatefulSet{})
	g.Expect(s.Spec.VolumeClaimTemplates).To(HaveLen(1))
	g.Expect(*s.Spec.Replicas).To(Equal(int32(2)))
	g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.Deployment{}))).To(BeTrue())

	sc := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "default-" + ns, Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner: "example.com/none",
	}
	must(t, k8sClient.Create(ctx, sc))
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), sc) })
	touchCR(t, cr)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(got, cbv1.ConditionSpoolReady).Reason).To(Equal(cbv1.ReasonSpoolHasRoom))
	}).Should(Succeed())

	// A named class that does not exist is said too.
	patchCR(t, cr, func(c *cbv1.CallbackReceiver) { c.Spec.Spool = &cbv1.SpoolSpec{StorageClassName: ptr.To("nope")} })
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(got, cbv1.ConditionSpoolReady).Reason).To(Equal(cbv1.ReasonStorageClassNotFound))
	}).Should(Succeed())
}

// TestScaleDownDrainsRetainedClaims: the claim of a removed ordinal is drained by a Job
// while status says so, then deleted with the Job; a scale-up takes a claim back (its Job
// goes).
func TestScaleDownDrainsRetainedClaims(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, onStaticClaims)
	g.Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.StatefulSet{}) }).Should(Succeed())
	claims := []*corev1.PersistentVolumeClaim{makeClaim(t, cr, 0), makeClaim(t, cr, 1)}

	scaleTo(g, cr, 1)
	job := &batchv1.Job{}
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.StrandedSpools).To(HaveLen(1))
		g.Expect(got.Status.StrandedSpools[0].Name).To(Equal("spool-blacklist-1"))
		g.Expect(got.Status.StrandedSpools[0].State).To(Equal(controllers.StrandedDraining))
		g.Expect(condition(got, cbv1.ConditionSpoolReady).Reason).To(Equal(cbv1.ReasonSpoolsStranded))
		get(g, ns, "blacklist-drain-1", job)
	}).Should(Succeed())
	g.Expect(job.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName).To(Equal("spool-blacklist-1"))
	g.Expect(job.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--drain-only=true"))
	g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "blacklist-drain-0"}, &batchv1.Job{}))).To(BeTrue())

	// Scale back up before the drain ends: the pod gets its claim back, the Job goes.
	scaleTo(g, cr, 2)
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(job), &batchv1.Job{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Job still there: %v", err)
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.StrandedSpools).To(BeEmpty())
	}).Should(Succeed())

	// Down again, and this time the drain succeeds: claim and Job are deleted.
	scaleTo(g, cr, 1)
	g.Eventually(func(g Gomega) { get(g, ns, "blacklist-drain-1", job) }).Should(Succeed())
	completeJob(t, job)
	g.Eventually(func(g Gomega) {
		pvc := &corev1.PersistentVolumeClaim{}
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(claims[1]), pvc)
		g.Expect(apierrors.IsNotFound(err) || !pvc.DeletionTimestamp.IsZero()).To(BeTrue(), "claim not deleted: %v", err)
		err = k8sClient.Get(ctx, client.ObjectKeyFromObject(job), &batchv1.Job{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Job still there: %v", err)
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.StrandedSpools).To(BeEmpty())
	}).Should(Succeed())
	pvc := get(g, ns, claims[0].Name, &corev1.PersistentVolumeClaim{})
	g.Expect(pvc.DeletionTimestamp.IsZero()).To(BeTrue(), "the claim of a kept ordinal must stay")
}

// TestDeletionWaitsForDrains: deleting the resource stops its receivers, drains every
// claim, and lets the resource go only once they are deleted.
func TestDeletionWaitsForDrains(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, onStaticClaims)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Finalizers).To(ContainElement(controllers.SpoolFinalizer))
		get(g, ns, cr.Name, &appsv1.StatefulSet{})
	}).Should(Succeed())
	makeClaim(t, cr, 0)
	makeClaim(t, cr, 1)
	must(t, k8sClient.Delete(ctx, cr))
	var jobs [2]*batchv1.Job
	g.Eventually(func(g Gomega) {
		s := get(g, ns, cr.Name, &appsv1.StatefulSet{})
		g.Expect(*s.Spec.Replicas).To(BeZero())
		for i := range jobs {
			jobs[i] = get(g, ns, resources.DrainJobName(cr, i), &batchv1.Job{})
		}
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.StrandedSpools).To(HaveLen(2))
	}).Should(Succeed())
	// Still there while a claim holds events.
	completeJob(t, jobs[0])
	g.Consistently(func() error {
		return k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &cbv1.CallbackReceiver{})
	}, 2*time.Second).Should(Succeed())
	completeJob(t, jobs[1])
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &cbv1.CallbackReceiver{}))
	}).Should(BeTrue())
}

// TestMigrationFromDeployment: a resource on EmptyDir moved to claims keeps its Deployment
// (its pods still receive and deliver) until every StatefulSet pod is ready, then deletes it.
func TestMigrationFromDeployment(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil) // the fixture is on EmptyDir
	waitForDeployment(g, cr)
	patchCR(t, cr, func(c *cbv1.CallbackReceiver) { c.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolPersistentVolumeClaim} })
	s := &appsv1.StatefulSet{}
	g.Eventually(func(g Gomega) {
		get(g, ns, cr.Name, s)
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.StrandedSpools).To(ContainElement(HaveField("Kind", "Deployment")))
	}).Should(Succeed())
	g.Consistently(func() error {
		return k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.Deployment{})
	}, 2*time.Second).Should(Succeed(), "the Deployment must stay until the StatefulSet is ready")

	// The StatefulSet controller's part: both pods ready.
	s.Status = appsv1.StatefulSetStatus{ObservedGeneration: s.Generation, Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 2, UpdatedReplicas: 2}
	must(t, k8sClient.Status().Update(ctx, s))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.Deployment{}))
	}).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.StrandedSpools).To(BeEmpty())
		g.Expect(got.Status.ReadyReplicas).To(Equal(int32(2)))
	}).Should(Succeed())
}

// makeClaim is the claim the StatefulSet controller makes for an ordinal.
func makeClaim(t *testing.T, cr *cbv1.CallbackReceiver, ordinal int) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: resources.ClaimName(cr, ordinal), Namespace: cr.Namespace, Labels: resources.Labels(cr)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	must(t, k8sClient.Create(context.Background(), pvc))
	return pvc
}

// completeJob is the Job controller's part: the drain succeeded.
func completeJob(t *testing.T, j *batchv1.Job) {
	t.Helper()
	ctx := context.Background()
	now := metav1.Now()
	fresh := &batchv1.Job{}
	must(t, k8sClient.Get(ctx, client.ObjectKeyFromObject(j), fresh))
	fresh.Status = batchv1.JobStatus{
		StartTime: &now, CompletionTime: &now, Succeeded: 1,
		Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	must(t, k8sClient.Status().Update(ctx, fresh))
}

// touchCR changes an annotation, which makes the operator look again at once.
func touchCR(t *testing.T, cr *cbv1.CallbackReceiver) {
	t.Helper()
	patchCR(t, cr, func(c *cbv1.CallbackReceiver) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["test/touched"] = time.Now().Format(time.RFC3339Nano)
	})
}

func patchCR(t *testing.T, cr *cbv1.CallbackReceiver, change func(*cbv1.CallbackReceiver)) {
	t.Helper()
	ctx := context.Background()
	got := &cbv1.CallbackReceiver{}
	must(t, k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), got))
	base := got.DeepCopy()
	change(got)
	must(t, k8sClient.Patch(ctx, got, client.MergeFrom(base)))
}

// TestIdleStatefulSetWritesNothing: once reconciled, repeated reconciles write nothing to
// the StatefulSet (its claim template kept as the API server stored it, every field this
// operator applies stored as applied) nor to the resource.
func TestIdleStatefulSetWritesNothing(t *testing.T) {
	g := NewWithT(t)
	ns, cr := newReceiver(t, managerOptions{scrapeInterval: 100 * time.Millisecond}, onStaticClaims)
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(cr.Status.ObservedGeneration).To(Equal(cr.Generation))
		get(g, ns, cr.Name, &appsv1.StatefulSet{})
	}).Should(Succeed())
	time.Sleep(time.Second)
	before := get(g, ns, cr.Name, &appsv1.StatefulSet{}).ResourceVersion
	crBefore := get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).ResourceVersion
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.StatefulSet{}).ResourceVersion).To(Equal(before))
		g.Expect(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).ResourceVersion).To(Equal(crBefore))
	}, 2*time.Second, 100*time.Millisecond).Should(Succeed())
	for range 5 {
		touchCR(t, cr)
	}
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.StatefulSet{}).ResourceVersion).To(Equal(before))
	}, 2*time.Second).Should(Succeed())

	// A changed size applies to new claims only: the StatefulSet keeps its template, and the
	// resource stays reconciled (no error from an immutable field).
	patchCR(t, cr, func(c *cbv1.CallbackReceiver) { c.Spec.Spool.Size = ptr.To(resource.MustParse("5Gi")) })
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		s := get(g, ns, cr.Name, &appsv1.StatefulSet{})
		g.Expect(s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String()).To(Equal("1Gi"))
		g.Expect(s.Spec.Template.Spec.Containers[0].Args).To(ContainElement(HavePrefix("--spool-max-bytes=")))
	}).Should(Succeed())
}

// TestNamespaceDeletionIsNotHeld: a namespace being deleted takes the claims with it and
// cannot run drain Jobs: the finalizer lets the resource (and so the namespace) go.
func TestNamespaceDeletionIsNotHeld(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, onStaticClaims)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Finalizers).To(ContainElement(controllers.SpoolFinalizer))
	}).Should(Succeed())
	makeClaim(t, cr, 0)
	must(t, k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	// envtest runs no namespace controller: the resource's deletion is what it would do.
	must(t, k8sClient.Delete(ctx, cr))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &cbv1.CallbackReceiver{}))
	}).Should(BeTrue(), "the finalizer holds a terminating namespace")
}

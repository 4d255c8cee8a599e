package controllers

import (
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/catalog"
)

// commandFindings are what the catalogue says about the commands a resource names: IM sends
// only the commands of its catalogue (new ones appear, so an unknown one is accepted), and a
// name it does not know is most often a typo that silently matches nothing.
type commandFindings struct {
	unknown         []string // "name (did you mean X?)"
	beforeForwarded []string // before-callbacks forwarded: answered OK without a decision
	afterDecided    []string // after-callbacks decided: IM ignores the answer
}

func (f commandFindings) empty() bool {
	return len(f.unknown) == 0 && len(f.beforeForwarded) == 0 && len(f.afterDecided) == 0
}

// checkCommands looks up every command of spec.commands, spec.routes and spec.decisions.
func checkCommands(spec *cbv1.CallbackReceiverSpec) commandFindings {
	var f commandFindings
	look := func(c cbv1.Command, decided bool) {
		name := string(c)
		switch {
		case !catalog.Known(name):
			if s, ok := catalog.Suggest(name); ok {
				name += " (did you mean " + s + "?)"
			}
			f.unknown = append(f.unknown, name)
		case decided && !catalog.IsBefore(name):
			f.afterDecided = append(f.afterDecided, name)
		case !decided && catalog.IsBefore(name):
			f.beforeForwarded = append(f.beforeForwarded, name)
		}
	}
	for _, c := range spec.Commands {
		look(c, false)
	}
	for _, r := range spec.Routes {
		for _, c := range r.Commands {
			look(c, false)
		}
	}
	for _, d := range spec.Decisions {
		for _, c := range d.Commands {
			look(c, true)
		}
	}
	return f
}

// commandsCondition is advisory: Ready does not summarise it, as IM may send a command newer
// than the catalogue.
func commandsCondition(f commandFindings) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionCommandsRecognized, Status: metav1.ConditionTrue, Reason: cbv1.ReasonCommandsKnown,
		Message: "Every command is in IM's callback catalogue, and before-callbacks are decided."}
	if f.empty() {
		return c
	}
	c.Status = metav1.ConditionFalse
	var parts []string
	switch {
	case len(f.unknown) > 0:
		c.Reason = cbv1.ReasonUnknownCommand
	case len(f.beforeForwarded) > 0:
		c.Reason = cbv1.ReasonBeforeCallbackForwarded
	default:
		c.Reason = cbv1.ReasonAfterCallbackDecided
	}
	if len(f.unknown) > 0 {
		parts = append(parts, plural(len(f.unknown), "command")+" in no IM callback catalogue, so nothing may ever match: "+strings.Join(f.unknown, ", "))
	}
	if len(f.beforeForwarded) > 0 {
		parts = append(parts, plural(len(f.beforeForwarded), "before-callback")+" forwarded, so answered OK at once without a decision: "+strings.Join(f.beforeForwarded, ", ")+"; list them in spec.decisions to decide them")
	}
	if len(f.afterDecided) > 0 {
		parts = append(parts, plural(len(f.afterDecided), "after-callback")+" in spec.decisions, whose answer IM ignores: "+strings.Join(f.afterDecided, ", ")+"; forward them with spec.commands or spec.routes")
	}
	c.Message = truncate(strings.Join(parts, ". ") + ".")
	return c
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/imcallback/callback-operator/internal/version"
)

// eventMaker builds the CloudEvents of accepted callbacks; delivery and the decisions share it.
type eventMaker struct {
	sourceRef  types.URIRef      // CloudEvent source
	eventTypes map[string]string // CloudEvent type per handled command
	bindingCtx context.Context   // tells the SDK to encode in binary mode
}

// EventTypePrefix prefixes the CallbackCommand in the CloudEvent type.
const EventTypePrefix = "com.tencentcloud.im."

// Names of the CloudEvent extensions the receiver sets.
const (
	ExtSdkAppID           = "sdkappid"
	ExtClientIP           = "clientip"
	ExtOptPlatform        = "optplatform"
	ExtDeadLetterReason   = "deadletterreason"
	ExtDeadLetterAttempts = "deadletterattempts"
)

// item is an accepted callback waiting for delivery.
type item struct {
	received                                 time.Time
	sdkAppID, command, clientIP, optPlatform string
	hasClientIP, hasOptPlatform              bool
	body                                     []byte
}

// itemOf is the callback of a request that passed every check, received at received.
func itemOf(p *callbackParams, received time.Time, body []byte) item {
	return item{
		received:       received,
		sdkAppID:       p.sdkAppID,
		command:        p.command,
		clientIP:       p.clientIP,
		optPlatform:    p.optPlatform,
		hasClientIP:    p.hasClientIP,
		hasOptPlatform: p.hasOptPlatform,
		body:           body,
	}
}

// EventID is the id of the CloudEvent made from a callback: the first 32 hex digits of
// SHA-256(SdkAppid "\n" CallbackCommand "\n" body). IM redelivering a callback gives the same
// id; so do two identical actions (block, unblock, block again), which is why consumers should
// deduplicate on it only within a short window.
func EventID(sdkAppID, command string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(sdkAppID))
	h.Write([]byte{'\n'})
	h.Write([]byte(command))
	h.Write([]byte{'\n'})
	h.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// newEvent builds the CloudEvent of an accepted callback (README, "The events"). The context is
// filled in directly rather than through the setters, which would re-parse the constant
// source and re-validate the constant names for every event.
func (m *eventMaker) newEvent(it *item) event.Event {
	ext := make(map[string]any, 5)
	ext[ExtSdkAppID] = it.sdkAppID
	if it.hasClientIP {
		ext[ExtClientIP] = it.clientIP
	}
	if it.hasOptPlatform {
		ext[ExtOptPlatform] = it.optPlatform
	}
	typ, ok := m.eventTypes[it.command]
	if !ok {
		typ = EventTypePrefix + it.command
	}
	return event.Event{
		Context: &event.EventContextV1{
			ID:              EventID(it.sdkAppID, it.command, it.body),
			Source:          m.sourceRef,
			Type:            typ,
			DataContentType: &applicationJSON,
			Time:            &types.Timestamp{Time: it.received},
			Extensions:      ext,
		},
		DataEncoded: it.body,
	}
}

var applicationJSON = event.ApplicationJSON

// userAgent is the receiver's User-Agent on the requests it makes (events, decisions).
var userAgent = []string{"imcallback-receiver/" + version.Version}

// Command moderator is the moderation sample: a tiny decision service for the receiver's
// --decision flag. The receiver sends it the send-message before-callbacks
// (C2C.CallbackBeforeSendMsg, Group.CallbackBeforeSendMsg,
// OfficialAccount.CallbackBeforeSendMsg) as CloudEvents; it refuses a message whose text
// contains a banned word, rewrites configured words in the others (IM then delivers the
// changed message), and allows everything else. It answers in CloudEvents binary mode: the
// event's data is IM's reply, which the receiver relays as is.
//
//	moderator --listen=:8080 --ban=spam,scam --rewrite='darn=d**n' --refuse-code=120001 --refuse-info="message refused"
//
// GET /healthz answers 200; GET /stats returns the decisions taken so far as JSON.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// eventTypePrefix is the receiver's: com.tencentcloud.im.<CallbackCommand>.
const eventTypePrefix = "com.tencentcloud.im."

// answerType is the type of the CloudEvents the moderator answers with.
const answerType = "dev.imcallback.moderation.decision"

// sendMessageCommands are the before-callbacks whose messages are moderated.
var sendMessageCommands = map[string]bool{
	"C2C.CallbackBeforeSendMsg":             true,
	"Group.CallbackBeforeSendMsg":           true,
	"OfficialAccount.CallbackBeforeSendMsg": true,
}

// policy is what the moderator refuses and rewrites.
type policy struct {
	banned     []string // lower case
	rewrites   []rewrite
	refuseCode int
	refuseInfo string
}

type rewrite struct {
	from *regexp.Regexp // the word, in any letter case
	to   string
}

// stats counts the decisions taken (GET /stats).
type stats struct {
	mu                                   sync.Mutex
	Allowed, Refused, Rewritten, Invalid int
}

type moderator struct {
	policy policy
	stats  stats
	log    *log.Logger
}

// answer is IM's reply to a before-callback.
type answer struct {
	ActionStatus string
	ErrorCode    int
	ErrorInfo    string
	MsgBody      []json.RawMessage `json:",omitempty"`
}

func (m *moderator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/healthz":
		w.WriteHeader(http.StatusOK)
		return
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		m.stats.mu.Lock()
		body, _ := json.Marshal(&m.stats)
		m.stats.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		return
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST a CloudEvent", http.StatusMethodNotAllowed)
		return
	}
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err == nil {
		err = ev.Validate()
	}
	if err != nil {
		m.count(&m.stats.Invalid)
		// Not 2xx: the receiver applies its failure policy.
		http.Error(w, "not a valid CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	command := strings.TrimPrefix(ev.Type(), eventTypePrefix)
	a, verdict := m.decide(command, ev.Data())
	m.log.Printf(`{"id":%q,"command":%q,"decision":%q}`, ev.ID(), command, verdict)

	data, err := json.Marshal(a)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	reply := event.New()
	reply.SetID(ev.ID())
	reply.SetType(answerType)
	reply.SetSource("/moderator")
	reply.SetTime(time.Now())
	reply.SetExtension("decision", verdict)
	if err := reply.SetData(event.ApplicationJSON, json.RawMessage(data)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := cehttp.WriteResponseWriter(binding.WithForceBinary(r.Context()), binding.ToMessage(&reply), http.StatusOK, w); err != nil {
		m.log.Printf("writing the answer: %v", err)
	}
}

// decide returns the answer to one callback and the verdict for logs and stats: refused,
// rewritten, allowed, or invalid (a message body it cannot read is allowed, as IM would).
func (m *moderator) decide(command string, data []byte) (answer, string) {
	allow := answer{ActionStatus: "OK", ErrorCode: 0, ErrorInfo: ""}
	if !sendMessageCommands[command] {
		m.count(&m.stats.Allowed)
		return allow, "allowed"
	}
	var msg struct{ MsgBody []json.RawMessage }
	if err := json.Unmarshal(data, &msg); err != nil {
		m.count(&m.stats.Invalid)
		return allow, "invalid"
	}
	changed := false
	body := make([]json.RawMessage, len(msg.MsgBody))
	for i, raw := range msg.MsgBody {
		body[i] = raw
		text, ok := elementText(raw)
		if !ok {
			continue
		}
		if word, banned := m.policy.bannedWord(text); banned {
			m.count(&m.stats.Refused)
			info := m.policy.refuseInfo
			if info == "" {
				info = "message refused: it contains " + strconv.Quote(word)
			}
			return answer{ActionStatus: "OK", ErrorCode: m.policy.refuseCode, ErrorInfo: info}, "refused"
		}
		if rewritten := m.policy.rewrite(text); rewritten != text {
			if elem, err := withText(raw, rewritten); err == nil {
				body[i], changed = elem, true
			}
		}
	}
	if !changed {
		m.count(&m.stats.Allowed)
		return allow, "allowed"
	}
	m.count(&m.stats.Rewritten)
	allow.MsgBody = body
	return allow, "rewritten"
}

func (m *moderator) count(n *int) {
	m.stats.mu.Lock()
	*n++
	m.stats.mu.Unlock()
}

// elementText returns the text of a TIMTextElem element.
func elementText(raw json.RawMessage) (string, bool) {
	var e struct {
		MsgType    string
		MsgContent struct{ Text string }
	}
	if json.Unmarshal(raw, &e) != nil || e.MsgType != "TIMTextElem" {
		return "", false
	}
	return e.MsgContent.Text, true
}

// withText returns the element with its MsgContent.Text replaced, every other member kept.
func withText(raw json.RawMessage, text string) (json.RawMessage, error) {
	var elem map[string]json.RawMessage
	if err := json.Unmarshal(raw, &elem); err != nil {
		return nil, err
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(elem["MsgContent"], &content); err != nil {
		return nil, err
	}
	t, err := json.Marshal(text)
	if err != nil {
		return nil, err
	}
	content["Text"] = t
	if elem["MsgContent"], err = json.Marshal(content); err != nil {
		return nil, err
	}
	return json.Marshal(elem)
}

func (p *policy) bannedWord(text string) (string, bool) {
	lower := strings.ToLower(text)
	for _, w := range p.banned {
		if strings.Contains(lower, w) {
			return w, true
		}
	}
	return "", false
}

// rewrite replaces each configured word, in any letter case.
func (p *policy) rewrite(text string) string {
	for _, rw := range p.rewrites {
		text = rw.from.ReplaceAllLiteralString(text, rw.to)
	}
	return text
}

// parsePolicy reads the flag values.
func parsePolicy(ban, rewrites string, code int, info string) (policy, error) {
	p := policy{refuseCode: code, refuseInfo: info}
	if code != 1 && code != 2 && (code < 120001 || code > 130000) {
		return p, fmt.Errorf("--refuse-code %d: want 1 (refuse), 2 (drop silently) or 120001..130000 (refuse, the client sees the code and info)", code)
	}
	for _, w := range strings.Split(ban, ",") {
		if w = strings.TrimSpace(w); w != "" {
			p.banned = append(p.banned, strings.ToLower(w))
		}
	}
	for _, pair := range strings.Split(rewrites, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		from, to, ok := strings.Cut(pair, "=")
		if !ok || from == "" {
			return p, fmt.Errorf("--rewrite %q: want WORD=REPLACEMENT[,WORD=REPLACEMENT...]", pair)
		}
		p.rewrites = append(p.rewrites, rewrite{regexp.MustCompile("(?i)" + regexp.QuoteMeta(from)), to})
	}
	return p, nil
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	ban := flag.String("ban", "", "comma-separated words; a message whose text contains one (in any letter case) is refused")
	rewrites := flag.String("rewrite", "", "comma-separated WORD=REPLACEMENT pairs applied to the text of the other messages")
	code := flag.Int("refuse-code", 1, "ErrorCode of a refusal: 1 (refuse), 2 (drop silently) or 120001..130000 (the sender's client sees it with --refuse-info)")
	info := flag.String("refuse-info", "", "ErrorInfo of a refusal (default: names the word)")
	flag.Parse()
	p, err := parsePolicy(*ban, *rewrites, *code, *info)
	if err != nil {
		fmt.Fprintln(os.Stderr, "moderator:", err)
		os.Exit(2)
	}
	logger := log.New(os.Stdout, "", 0)
	srv := &http.Server{Addr: *listen, Handler: &moderator{policy: p, log: logger}, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Printf("moderator: deciding on %s (banned %q, rewrites %d, refusal code %d)", *listen, p.banned, len(p.rewrites), p.refuseCode)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

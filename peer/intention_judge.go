package peer

import (
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// DecodeIntention decodes a signed intention document without judging its
// signer (crdt.IntentionDecoder). The replica uses it for entries verified
// before a restart: an operator certificate that has ended since, or a root
// the agent no longer lists, must not make the stored replica unreadable;
// whether the intention still applies is WithdrawIntentions' judgement
// (intentionSignerValid).
func (tb *trustBook) DecodeIntention(signed []byte) (crdt.Intention, error) {
	env, err := intentionEnvelope(signed)
	if err != nil {
		return crdt.Intention{}, err
	}
	return intentionPayload(env)
}

// openIntention opens a signed intention envelope with v at time at and
// checks that its signer may sign intentions.
func openIntention(v *identity.Verifier, signed []byte, at time.Time) (crdt.Intention, error) {
	env, err := intentionEnvelope(signed)
	if err != nil {
		return crdt.Intention{}, err
	}
	caps, err := v.Open(env, at)
	if err != nil {
		return crdt.Intention{}, err
	}
	if !caps.Root && !caps.SignIntentions {
		return crdt.Intention{}, fmt.Errorf("trust: key %s may not sign intentions", identity.NodeID(caps.Key))
	}
	return intentionPayload(env)
}

func intentionEnvelope(signed []byte) (*identity.Envelope, error) {
	env, err := identity.UnmarshalEnvelope(signed)
	if err != nil {
		return nil, err
	}
	if env.Type != envIntention {
		return nil, fmt.Errorf("trust: envelope type %q is not an intention", env.Type)
	}
	return env, nil
}

// intentionPayload decodes and validates the intention an envelope carries.
func intentionPayload(env *identity.Envelope) (crdt.Intention, error) {
	var in crdt.Intention
	if err := cbor.Unmarshal(env.Payload, &in); err != nil {
		return crdt.Intention{}, fmt.Errorf("trust: intention payload: %w", err)
	}
	if err := in.Validate(); err != nil {
		return crdt.Intention{}, err
	}
	if in.ID == "" {
		in.ID = pairIntentionID(in.SourceName, in.DestinationName)
	}
	return in, nil
}

// JudgeIntention judges a replicated intention document once for good
// (crdt.IntentionJudge), so that agents agree whatever the order in which
// the document and the trust statements reach them. at is the time the
// relaying node stamped the record with.
//
//   - Never valid — a bad signature or chain, a root this agent never
//     trusted, a signer not allowed to sign intentions, a chain not valid
//     at at — is an error: the record is refused.
//   - Valid at at, but its signer revoked or its root retired since: merged
//     as withdrawn. It takes its place in the pair's version order and
//     applies nowhere, as on an agent that merged it before the statement
//     (WithdrawIntentions with intentionSignerValid).
//   - Otherwise it applies. A certificate that ends later does not
//     withdraw it, as intentionSignerValid says.
//
// The price, documented in docs/REPLICA.md: a document signed by a revoked
// key supersedes the pair's older versions (without applying), so a
// trusted node that relays such a document — a compromised node holding a
// revoked key — can make a pair fall back to the default policy until a
// valid key signs a higher version. Agents' APIs never accept such a
// document (VerifyIntention judges the signer now).
func (tb *trustBook) JudgeIntention(signed []byte, at time.Time) (crdt.Intention, bool, error) {
	in, err := openIntention(tb.v.Unrevoked(), signed, at)
	if err != nil {
		return crdt.Intention{}, false, err
	}
	return in, !tb.intentionSignerValid(signed), nil
}

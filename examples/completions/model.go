package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the language model: a word-level trigram model with backoff to
// bigram and unigram statistics, trained by counting over a text. It is tiny
// and fast to train, but it is a real (if very small) statistical language
// model: every generated token is drawn from P(next | previous two tokens).

// paraToken marks a paragraph break (a blank line) in the token stream, so
// the model learns where paragraphs start and end.
const paraToken = "\n\n"

// tokenKind says how a token joins its neighbours when text is rebuilt.
type tokenKind uint8

const (
	kindWord  tokenKind = iota // words and numbers: a space before them
	kindOpen                   // “ ‘ ( [ : a space before, none after
	kindClose                  // . , ; : ! ? ” ’ ) ] : no space before
	kindDash                   // — – - : no space either side (Gutenberg style)
	kindPara                   // paragraph break: no space either side
)

func classify(tok string) tokenKind {
	switch tok {
	case paraToken:
		return kindPara
	case "“", "‘", "(", "[", "{":
		return kindOpen
	case ".", ",", ";", ":", "!", "?", "”", "’", ")", "]", "}":
		return kindClose
	case "—", "–", "-":
		return kindDash
	}
	return kindWord
}

// spaceBefore reports whether a token of kind cur is written with a leading
// space after a token of kind prev.
func spaceBefore(prev, cur tokenKind) bool {
	switch cur {
	case kindClose, kindDash, kindPara:
		return false
	}
	switch prev {
	case kindOpen, kindDash, kindPara:
		return false
	}
	return true
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// tokenize splits text into word and punctuation tokens. Apostrophes and
// hyphens inside a word stay in it ("don’t", "rabbit-hole"); blank lines
// become paraToken; the Gutenberg formatting marks _ (italics) and * (section
// breaks) are dropped. A text ending in a blank line ends with paraToken.
func tokenize(text string) []string {
	var toks []string
	rs := []rune(text)
	newlines := 0
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case r == '\n':
			newlines++
			i++
			continue
		case unicode.IsSpace(r), r == '_', r == '*':
			i++
			continue
		}
		if newlines >= 2 && len(toks) > 0 && toks[len(toks)-1] != paraToken {
			toks = append(toks, paraToken)
		}
		newlines = 0
		if isWordRune(r) {
			j := i + 1
			for j < len(rs) {
				if isWordRune(rs[j]) {
					j++
					continue
				}
				if (rs[j] == '’' || rs[j] == '\'' || rs[j] == '-') && j+1 < len(rs) && isWordRune(rs[j+1]) {
					j += 2
					continue
				}
				break
			}
			toks = append(toks, string(rs[i:j]))
			i = j
			continue
		}
		toks = append(toks, string(r))
		i++
	}
	if newlines >= 2 && len(toks) > 0 && toks[len(toks)-1] != paraToken {
		toks = append(toks, paraToken)
	}
	return toks
}

// normalizePrompt maps typewriter punctuation onto the corpus's typographic
// forms so that prompts typed on a keyboard find their contexts: straight
// quotes become curly ones (opening or closing by position), an apostrophe
// inside a word becomes ’, and "--" becomes an em dash.
func normalizePrompt(s string) string {
	if !strings.ContainsAny(s, "'\"-") {
		return s
	}
	s = strings.ReplaceAll(s, "--", "—")
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range rs {
		opening := i == 0 || unicode.IsSpace(rs[i-1]) || strings.ContainsRune("“‘([—", rs[i-1])
		switch r {
		case '"':
			if opening {
				r = '“'
			} else {
				r = '”'
			}
		case '\'':
			if opening {
				r = '‘'
			} else {
				r = '’'
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}

// succ is one observed successor of a context and how often it followed it.
type succ struct {
	id int32
	n  int32
}

// dist is the successor distribution of one context, sorted by token id.
type dist struct {
	s     []succ
	total int32
}

func (d *dist) count(id int32) int32 {
	i, ok := slices.BinarySearchFunc(d.s, id, func(e succ, id int32) int { return int(e.id) - int(id) })
	if !ok {
		return 0
	}
	return d.s[i].n
}

// Model is a trained trigram language model. It is read-only after Train and
// safe for concurrent use.
type Model struct {
	vocab []string         // id -> token text
	kinds []tokenKind      // id -> kind
	ids   map[string]int32 // token text -> id
	lower map[string]int32 // lower-cased token -> most frequent id with that form
	uni   dist             // unigram counts over the whole vocabulary
	bi    map[int32]*dist
	tri   map[uint64]*dist
	para  int32
	size  int // number of training tokens
}

// Interpolation weights used when a trigram context has been seen: the
// trigram estimate is mixed with the bigram one so that sampling is not a pure
// copy of the corpus. Unseen trigram contexts back off to the bigram alone,
// unseen bigram contexts to the unigram distribution.
const (
	lambdaTri = 0.8
	lambdaBi  = 1 - lambdaTri
)

func triKey(u, v int32) uint64 { return uint64(uint32(u))<<32 | uint64(uint32(v)) }

// Train builds a model from text. Token ids are assigned in order of first
// appearance and every distribution is sorted by id, so training the same
// text always yields the same model.
func Train(text string) *Model {
	toks := tokenize(text)
	m := &Model{ids: make(map[string]int32), lower: make(map[string]int32)}
	seq := make([]int32, len(toks))
	var uni []int32
	for i, t := range toks {
		id, ok := m.ids[t]
		if !ok {
			id = int32(len(m.vocab))
			m.ids[t] = id
			m.vocab = append(m.vocab, t)
			m.kinds = append(m.kinds, classify(t))
			uni = append(uni, 0)
		}
		uni[id]++
		seq[i] = id
	}
	m.size = len(seq)
	if _, ok := m.ids[paraToken]; !ok {
		m.ids[paraToken] = int32(len(m.vocab))
		m.vocab = append(m.vocab, paraToken)
		m.kinds = append(m.kinds, kindPara)
		uni = append(uni, 0)
	}
	m.para = m.ids[paraToken]
	for id, n := range uni {
		if n > 0 {
			m.uni.s = append(m.uni.s, succ{int32(id), n})
			m.uni.total += n
		}
	}
	// Lower-case lookup: the most frequent spelling wins, ties to the lower id.
	for id, t := range m.vocab {
		l := strings.ToLower(t)
		if prev, ok := m.lower[l]; !ok || uni[id] > uni[prev] {
			m.lower[l] = int32(id)
		}
	}

	biCounts := make(map[int32]map[int32]int32)
	triCounts := make(map[uint64]map[int32]int32)
	for i := 1; i < len(seq); i++ {
		v, w := seq[i-1], seq[i]
		if biCounts[v] == nil {
			biCounts[v] = make(map[int32]int32)
		}
		biCounts[v][w]++
		if i >= 2 {
			k := triKey(seq[i-2], v)
			if triCounts[k] == nil {
				triCounts[k] = make(map[int32]int32)
			}
			triCounts[k][w]++
		}
	}
	m.bi = make(map[int32]*dist, len(biCounts))
	for k, c := range biCounts {
		m.bi[k] = toDist(c)
	}
	m.tri = make(map[uint64]*dist, len(triCounts))
	for k, c := range triCounts {
		m.tri[k] = toDist(c)
	}
	return m
}

func toDist(c map[int32]int32) *dist {
	d := &dist{s: make([]succ, 0, len(c))}
	for id, n := range c {
		d.s = append(d.s, succ{id, n})
		d.total += n
	}
	slices.SortFunc(d.s, func(a, b succ) int { return int(a.id) - int(b.id) })
	return d
}

// VocabSize is the number of distinct tokens the model knows.
func (m *Model) VocabSize() int { return len(m.vocab) }

// TrainingTokens is the number of tokens the model was trained on.
func (m *Model) TrainingTokens() int { return m.size }

// InVocab reports whether tok is a token of the training text.
func (m *Model) InVocab(tok string) bool {
	_, ok := m.ids[tok]
	return ok
}

// lookup maps a prompt token to a vocabulary id, or -1 if it is unknown.
func (m *Model) lookup(tok string) int32 {
	if id, ok := m.ids[tok]; ok {
		return id
	}
	if id, ok := m.lower[strings.ToLower(tok)]; ok {
		return id
	}
	return -1
}

// Backoff levels, reported by Generator.Level.
const (
	levelUnigram = 1
	levelBigram  = 2
	levelTrigram = 3
)

// next picks the token to follow context (u, v); -1 means "unknown". With
// temperature 0 it is greedy (ties go to the lower id); otherwise it samples
// from the distribution with probabilities raised to 1/temperature.
func (m *Model) next(u, v int32, temperature float64, rng *rand.Rand) (id int32, level int) {
	var bd *dist
	if v >= 0 {
		bd = m.bi[v]
	}
	if bd == nil {
		return pick(m.uni.s, func(s succ) float64 { return float64(s.n) / float64(m.uni.total) }, temperature, rng), levelUnigram
	}
	var td *dist
	if u >= 0 {
		td = m.tri[triKey(u, v)]
	}
	if td == nil {
		return pick(bd.s, func(s succ) float64 { return float64(s.n) / float64(bd.total) }, temperature, rng), levelBigram
	}
	// Every trigram successor is also a bigram successor, so the bigram list
	// holds all candidates.
	return pick(bd.s, func(s succ) float64 {
		return lambdaTri*float64(td.count(s.id))/float64(td.total) + lambdaBi*float64(s.n)/float64(bd.total)
	}, temperature, rng), levelTrigram
}

func pick(cands []succ, prob func(succ) float64, temperature float64, rng *rand.Rand) int32 {
	best, bestP := cands[0].id, -1.0
	for _, c := range cands {
		if p := prob(c); p > bestP {
			best, bestP = c.id, p
		}
	}
	if temperature <= 0 || len(cands) == 1 {
		return best
	}
	// w = (p/pmax)^(1/T), computed in log space so small T cannot overflow.
	weights := make([]float64, len(cands))
	logMax := math.Log(bestP)
	var sum float64
	for i, c := range cands {
		p := prob(c)
		if p > 0 {
			weights[i] = math.Exp((math.Log(p) - logMax) / temperature)
		}
		sum += weights[i]
	}
	r := rng.Float64() * sum
	for i, w := range weights {
		r -= w
		if r < 0 {
			return cands[i].id
		}
	}
	return best
}

// Generator continues one prompt token by token.
type Generator struct {
	m           *Model
	u, v        int32
	prev        tokenKind
	noSpace     bool
	temperature float64
	rng         *rand.Rand
	level       int
}

// NewGenerator prepares to continue prompt. It also returns the number of
// tokens in the prompt (by this model's tokenizer, known or not).
func (m *Model) NewGenerator(prompt string, temperature float64, seed uint64) (*Generator, int) {
	toks := tokenize(normalizePrompt(prompt))
	g := &Generator{
		m:           m,
		u:           -1,
		v:           m.para,
		prev:        kindPara,
		temperature: temperature,
		rng:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	if n := len(toks); n > 0 {
		g.v = m.lookup(toks[n-1])
		g.prev = classify(toks[n-1])
		if n > 1 {
			g.u = m.lookup(toks[n-2])
		}
	}
	if r, _ := utf8.DecodeLastRuneInString(prompt); prompt != "" && unicode.IsSpace(r) {
		g.noSpace = true
	}
	return g, len(toks)
}

// Next generates one token and returns its text as it continues the output
// so far (with a leading space where one belongs) and the token itself.
func (g *Generator) Next() (text, token string) {
	id, level := g.m.next(g.u, g.v, g.temperature, g.rng)
	g.level = level
	token = g.m.vocab[id]
	kind := g.m.kinds[id]
	text = token
	if !g.noSpace && spaceBefore(g.prev, kind) {
		text = " " + token
	}
	g.noSpace = false
	g.u, g.v, g.prev = g.v, id, kind
	return text, token
}

// Level is the backoff level (1 unigram, 2 bigram, 3 trigram) the last token
// was drawn from.
func (g *Generator) Level() int { return g.level }

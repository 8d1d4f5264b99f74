package synth

// language holds the word lists one language's posts are built from: a few
// dozen of its most common words, real words of that language so that a
// language detector classifies the text. These tables are read-only.
//
// Every string here must need no escaping in JSON (no quotes, backslashes or
// control characters): Append writes them into the event verbatim.
// TestWordsAreJSONSafe checks it.
type language struct {
	code  string
	words []string
	tags  []string // hashtags, without '#'
	// spaced languages separate words with spaces; Japanese does not.
	spaced bool
	// particles follow words in unspaced text, "今日は天気が…".
	particles []string
	endings   []string
}

// languages are the supported languages by ISO 639-1 code.
var languages = map[string]*language{
	"en": {
		code: "en", spaced: true,
		words: []string{
			"the", "and", "people", "today", "think", "about", "this", "that", "with", "have",
			"just", "really", "time", "good", "new", "great", "love", "know", "what", "when",
			"going", "like", "some", "because", "would", "could", "their", "there", "never", "always",
			"world", "news", "game", "city", "morning", "night", "friends", "work", "week", "everyone",
			"right", "still", "best", "happy", "something", "again", "here", "from", "your", "make",
			"was", "were", "been", "they", "will",
		},
		tags:    []string{"news", "music", "sports", "tech", "love", "weekend", "photo", "breaking", "tbt"},
		endings: []string{"", ".", "!", "?", "!!"},
	},
	"es": {
		code: "es", spaced: true,
		words: []string{
			"el", "la", "que", "de", "los", "las", "hoy", "gente", "muy", "pero",
			"para", "con", "por", "una", "esta", "todo", "cuando", "porque", "siempre", "nunca",
			"ahora", "mañana", "noche", "trabajo", "amigos", "mundo", "vida", "bien", "mejor", "nuevo",
			"también", "creo", "tengo", "hacer", "ciudad", "partido", "gracias", "semana", "tiempo", "nada",
			"mucho", "donde", "quiero", "están", "hay", "año", "casa", "verdad", "del", "se",
		},
		tags:    []string{"noticias", "fútbol", "música", "viernes", "buenosdías", "tecnología"},
		endings: []string{"", ".", "!", "?"},
	},
	"fr": {
		code: "fr", spaced: true,
		words: []string{
			"le", "la", "les", "des", "est", "une", "pas", "que", "pour", "avec",
			"dans", "sur", "mais", "tout", "très", "aujourd'hui", "gens", "toujours", "jamais", "maintenant",
			"demain", "soir", "travail", "amis", "monde", "vie", "bien", "mieux", "nouveau", "aussi",
			"je", "pense", "faire", "ville", "merci", "semaine", "temps", "rien", "beaucoup", "vraiment",
			"encore", "nous", "vous", "ils", "cette", "être", "avoir", "du", "et", "c'est",
		},
		tags:    []string{"actualité", "foot", "musique", "vendredi", "bonjour", "cinéma"},
		endings: []string{"", ".", " !", " ?"},
	},
	"de": {
		code: "de", spaced: true,
		words: []string{
			"der", "die", "das", "und", "ist", "nicht", "ich", "wir", "heute", "Leute",
			"sehr", "aber", "für", "mit", "auf", "auch", "noch", "immer", "nie", "jetzt",
			"morgen", "Abend", "Arbeit", "Freunde", "Welt", "Leben", "gut", "besser", "neue", "denke",
			"machen", "Stadt", "Spiel", "danke", "Woche", "Zeit", "nichts", "viel", "wirklich", "schon",
			"wieder", "eine", "einen", "sind", "haben", "werden", "über", "ein", "es", "zu",
		},
		tags:    []string{"nachrichten", "fußball", "musik", "wochenende", "berlin", "technik"},
		endings: []string{"", ".", "!", "?"},
	},
	"pt": {
		code: "pt", spaced: true,
		words: []string{
			"o", "a", "os", "as", "que", "de", "do", "da", "não", "hoje",
			"gente", "muito", "mas", "para", "com", "por", "uma", "está", "tudo", "quando",
			"porque", "sempre", "nunca", "agora", "amanhã", "noite", "trabalho", "amigos", "mundo", "vida",
			"bem", "melhor", "novo", "também", "acho", "fazer", "cidade", "jogo", "obrigado", "semana",
			"tempo", "nada", "você", "estou", "são", "isso", "em", "eu", "um", "mais",
		},
		tags:    []string{"notícias", "futebol", "música", "brasil", "bomdia", "sextou"},
		endings: []string{"", ".", "!", "?"},
	},
	"ja": {
		code: "ja", spaced: false,
		words: []string{
			"今日", "人", "思う", "とても", "本当に", "新しい", "仕事", "友達", "世界", "時間",
			"明日", "夜", "朝", "楽しい", "嬉しい", "みんな", "これ", "それ", "私", "天気",
			"電車", "映画", "音楽", "試合", "週末", "会社", "学校", "ご飯", "写真", "好き",
			"すごい", "まだ", "もう", "少し", "一緒に", "見た", "行きたい", "食べた", "頑張る", "ありがとう",
			"ニュース", "東京",
		},
		particles: []string{"は", "が", "を", "に", "で", "の", "と", "も"},
		tags:      []string{"ニュース", "拡散希望", "今日の一枚", "音楽", "映画", "東京"},
		endings:   []string{"", "。", "！", "…"},
	},
}

// handleStems start author handles; the author index follows ("maria_42").
var handleStems = []string{
	"maria", "joao", "lucas", "emma", "yuki", "hans", "chloe", "diego",
	"sofia", "kenji", "lea", "noah", "ana", "pierre", "lena", "carlos",
	"mia", "hiro", "julia", "marco", "olivia", "felix", "sakura", "mateo",
}

// linkHosts are the example domains of generated links.
var linkHosts = []string{"https://t.example/", "https://t.example/", "https://t.example/", "https://example.com/", "https://news.example/"}

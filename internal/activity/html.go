package activity

import (
	"strings"

	"golang.org/x/net/html"
)

// stripHTML returns the text of an HTML fragment, tags removed and entities
// decoded, with a space where a block or line break was, and the href of
// every link that is not a mention or a hashtag (Mastodon marks those with
// the classes "mention" and "hashtag").
func stripHTML(s string) (string, []string) {
	var b strings.Builder
	var hrefs []string
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return strings.Join(strings.Fields(b.String()), " "), hrefs
		case html.TextToken:
			b.Write(z.Text())
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "p", "br", "div", "li", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6":
				b.WriteByte(' ')
			case "a":
				var href, class string
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					switch string(k) {
					case "href":
						href = string(v)
					case "class":
						class = string(v)
					}
				}
				if href != "" && !hasClass(class, "mention") && !hasClass(class, "hashtag") &&
					(strings.HasPrefix(href, "http://") || strings.HasPrefix(href, "https://")) {
					hrefs = append(hrefs, href)
				}
			}
		}
	}
}

func hasClass(classes, c string) bool {
	for f := range strings.FieldsSeq(classes) {
		if f == c {
			return true
		}
	}
	return false
}

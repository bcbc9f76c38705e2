package console_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// collectActionsJS finds every action on the page (links, buttons, inputs, selects, text
// areas, <summary>) and checks that the keyboard can reach it: displayed, not taken out of
// the tab order (tabindex < 0) nor reordered (tabindex > 0), and focus() really focuses it.
// Controls inside a closed <details> are skipped: its <summary> is checked instead. The
// reachable ones, in document order, are kept in window.__kbActions for the Tab walk.
const collectActionsJS = `(() => {
  const name = el => {
    const label = (el.getAttribute('aria-label') || el.textContent || el.value || el.name || '').trim().replace(/\s+/g, ' ').slice(0, 40);
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.type && el.tagName !== 'A' ? '[' + el.type + ']' : '') +
      (el.getAttribute('href') ? '(' + el.getAttribute('href') + ')' : '') + (label ? ' "' + label + '"' : '');
  };
  const problems = [], reachable = [];
  for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary')) {
    if (el.disabled) { continue; }
    const closed = el.closest('details:not([open])');
    if (closed && closed.querySelector(':scope > summary') !== el) { continue; }
    if (el.getClientRects().length === 0 || getComputedStyle(el).visibility === 'hidden') {
      problems.push(name(el) + ': not displayed'); continue;
    }
    if (el.tabIndex < 0) { problems.push(name(el) + ': tabindex ' + el.tabIndex); continue; }
    if (el.tabIndex > 0) { problems.push(name(el) + ': positive tabindex ' + el.tabIndex + ' reorders the keyboard path'); }
    el.focus();
    if (document.activeElement !== el) { problems.push(name(el) + ': focus() does not focus it'); continue; }
    reachable.push(el);
  }
  if (document.activeElement) { document.activeElement.blur(); }
  window.__kbActions = reachable;
  return {count: reachable.length, problems: problems, names: reachable.map(name)};
})()`

// focusedJS says where the focus is: its index in window.__kbActions (-1: not an action),
// a description, and whether the control has several tab stops of its own (date and time
// inputs step through their fields with Tab).
const focusedJS = `(() => {
  const el = document.activeElement;
  const d = el ? el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' ' + (el.outerHTML || '').slice(0, 120) : 'nothing';
  return {idx: window.__kbActions.indexOf(el), desc: d,
    multi: !!el && el.tagName === 'INPUT' && ['date', 'datetime-local', 'time', 'month', 'week'].includes(el.type)};
})()`

type actions struct {
	Count    int      `json:"count"`
	Problems []string `json:"problems"`
	Names    []string `json:"names"`
}

type focused struct {
	Idx   int    `json:"idx"`
	Desc  string `json:"desc"`
	Multi bool   `json:"multi"`
}

// checkKeyboard checks, on the page loaded in ctx, that every action is focusable and
// that pressing Tab from the first action walks through all of them in document order,
// skipping none. It returns the actions' descriptions, in that order, for further checks.
func checkKeyboard(t *testing.T, ctx context.Context, page string) []string {
	t.Helper()
	a := value(t, ctx, chromedp.Evaluate[actions](collectActionsJS))
	for _, p := range a.Problems {
		t.Errorf("%s: the keyboard cannot reach %s", page, p)
	}
	if a.Count == 0 {
		t.Fatalf("%s: no action found", page)
	}
	// Tab through the page from its first action.
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`window.__kbActions[0].focus()`))
	prev, walked := 0, true
	for presses := 0; prev < a.Count-1; presses++ {
		if presses > 4*a.Count+20 {
			t.Errorf("%s: Tab pressed %d times and focus is still at action %d of %d (%s)", page, presses, prev+1, a.Count, a.Names[prev])
			walked = false
			break
		}
		run(t, ctx, chromedp.KeyEvent(kb.Tab))
		f := value(t, ctx, chromedp.Evaluate[focused](focusedJS))
		if f.Idx == prev && f.Multi {
			continue // the next field of a date or time input
		}
		if f.Idx != prev+1 {
			want := a.Names[prev+1]
			t.Errorf("%s: Tab from %s moved focus to %s, want %s", page, a.Names[prev], f.Desc, want)
			walked = false
			break
		}
		prev = f.Idx
	}
	if walked && testing.Verbose() {
		t.Logf("%s: %d actions, reached by Tab in order", page, a.Count)
	}
	return a.Names
}

// hasAction reports whether one of the described actions contains all of parts.
func hasAction(names []string, parts ...string) bool {
	for _, n := range names {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(n, p)
		}
		if ok {
			return true
		}
	}
	return false
}

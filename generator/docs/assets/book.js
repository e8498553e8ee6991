// Typeset every element that carries TeX in data-tex with the vendored KaTeX.
// throwOnError: a formula KaTeX cannot read is a console error (the book's test
// fails on it) and stays visible as its TeX source; the other formulas still render.
"use strict";
document.querySelectorAll("[data-tex]").forEach(function (el) {
  try {
    katex.render(el.dataset.tex, el, {throwOnError: true, displayMode: el.classList.contains("display")});
  } catch (err) {
    console.error("KaTeX could not typeset " + JSON.stringify(el.dataset.tex) + ": " + err.message);
  }
});

// Small page behaviours that need no library: copy buttons on verbatim text.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var block = button.parentElement.querySelector("pre");
  if (!block || !navigator.clipboard) return;
  navigator.clipboard.writeText(block.textContent).then(function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  });
});

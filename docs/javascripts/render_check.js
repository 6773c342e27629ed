// After load, record on <body> what a reader would see: how many math elements the browser laid
// out with a nonzero size, and how many images decoded. The docs test reads these attributes from
// a headless browser's DOM; readers are not affected.
window.addEventListener("load", function () {
  var math = Array.prototype.slice.call(document.querySelectorAll("math"));
  var images = Array.prototype.slice.call(document.querySelectorAll("img"));
  document.body.setAttribute("data-math-rendered", math.filter(function (m) {
    var r = m.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length);
  document.body.setAttribute("data-math-total", math.length);
  document.body.setAttribute("data-images-decoded", images.filter(function (i) {
    return i.complete && i.naturalWidth > 0; }).length);
});

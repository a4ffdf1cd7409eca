// The dashboard's turnover chart (Chart.js). Amounts arrive as decimal strings; they
// become numbers only to be drawn.
(function () {
  const data = JSON.parse(document.getElementById("turnover-data").textContent);
  const names = document.getElementById("turnover-labels").dataset;
  const lang = document.documentElement.lang || undefined;
  const days = data.labels.map((iso) => new Date(iso + "T00:00:00").toLocaleDateString(lang, { day: "numeric", month: "short" }));
  new Chart(document.getElementById("turnover-chart"), {
    type: "bar",
    data: {
      labels: days,
      datasets: [
        { label: names.payments, data: data.payments.map(Number), backgroundColor: "rgba(25, 135, 84, 0.7)" },
        { label: names.charges, data: data.charges.map(Number), backgroundColor: "rgba(220, 53, 69, 0.7)" },
      ],
    },
    options: {
      animation: false,
      scales: { y: { ticks: { callback: (v) => Number(v).toLocaleString(lang) } } },
      plugins: { tooltip: { callbacks: { label: (c) => c.dataset.label + ": " + Number(c.raw).toLocaleString(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 }) } } },
    },
  });
})();

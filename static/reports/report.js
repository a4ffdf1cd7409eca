// A standard report's chart (Chart.js) from the service's series: amounts arrive as
// decimal strings and become numbers only to be drawn.
(function () {
  const chart = JSON.parse(document.getElementById("report-chart-data").textContent);
  const lang = document.documentElement.lang || undefined;
  const colours = ["rgba(13, 110, 253, 0.7)", "rgba(25, 135, 84, 0.7)", "rgba(220, 53, 69, 0.7)", "rgba(255, 193, 7, 0.7)", "rgba(111, 66, 193, 0.7)", "rgba(13, 202, 240, 0.7)"];
  new Chart(document.getElementById("report-chart"), {
    type: chart.type,
    data: {
      labels: chart.labels,
      datasets: chart.series.map((s, i) => ({
        label: s.name,
        data: s.data.map(Number),
        backgroundColor: chart.type === "pie" ? colours : colours[i % colours.length],
        borderColor: colours[i % colours.length],
      })),
    },
    options: {
      animation: false,
      plugins: { tooltip: { callbacks: { label: (c) => c.dataset.label + ": " + Number(c.raw).toLocaleString(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 }) } } },
    },
  });
})();

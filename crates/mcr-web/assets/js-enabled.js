// Loaded as a classic script at the top of <body>: tells the design system's CSS that
// JavaScript is available (nhsuk-frontend's template does this inline; our CSP forbids that).
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' nhsuk-frontend-supported' : '');
